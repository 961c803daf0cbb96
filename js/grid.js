// ResultGrid front end: an X/Y/Z plot of thumbnails with axis pickers, paging, a batch filter,
// full-size viewing and a two-image comparison with a difference view (computed in Python).

const SIZES = { S: 128, M: 192, L: 256 };

function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of [].concat(children)) if (child) node.append(child);
  return node;
}

function axisSelect(model, name, label) {
  const select = h("select", { class: "cw-grid-axis", "data-axis": name, title: `${label} axis` });
  const fill = () => {
    select.replaceChildren(h("option", { value: "", text: "—" }));
    for (const column of model.get("axis_options")) {
      select.append(h("option", { value: column, text: column }));
    }
    select.value = model.get(name) ?? "";
  };
  select.addEventListener("change", () => {
    model.set(name, select.value || null);
    model.save_changes();
  });
  fill();
  model.on(`change:${name}`, fill);
  model.on("change:axis_options", fill);
  return h("label", { class: "cw-grid-field" }, [h("span", { text: label }), select]);
}

function batchSelect(model) {
  const select = h("select", { class: "cw-grid-batch", title: "Show one batch" });
  const wrap = h("label", { class: "cw-grid-field" }, [h("span", { text: "Batch" }), select]);
  const fill = () => {
    const ids = model.get("batches");
    wrap.hidden = ids.length < 2;
    select.replaceChildren(h("option", { value: "", text: "all" }));
    for (const id of ids) select.append(h("option", { value: id, text: id.slice(0, 12) }));
    select.value = model.get("batch") ?? "";
  };
  select.addEventListener("change", () => {
    model.set("batch", select.value || null);
    model.set("page_index", 0);
    model.save_changes();
  });
  fill();
  model.on("change:batches", fill);
  model.on("change:batch", fill);
  return wrap;
}

function pager(model) {
  const label = h("span", { class: "cw-grid-page-label" });
  const go = (step) => {
    const count = model.get("page_labels").length;
    model.set("page_index", (model.get("page_index") + step + count) % count);
    model.save_changes();
  };
  const prev = h("button", { class: "cw-grid-prev", title: "Previous page", text: "‹", onclick: () => go(-1) });
  const next = h("button", { class: "cw-grid-next", title: "Next page", text: "›", onclick: () => go(1) });
  const wrap = h("span", { class: "cw-grid-pager" }, [prev, label, next]);
  const update = () => {
    const labels = model.get("page_labels");
    wrap.hidden = labels.length < 2;
    const i = model.get("page_index");
    label.textContent = `${labels[i] ?? ""} (${i + 1}/${labels.length})`;
  };
  update();
  model.on("change:page_labels", update);
  model.on("change:page_index", update);
  return wrap;
}

function blobUrl(buffer, mime) {
  return URL.createObjectURL(new Blob([buffer], { type: mime }));
}

export default {
  render({ model, el }) {
    const root = h("div", { class: "cw-grid" });
    const picks = [];
    const urls = [];
    let size = "M";

    const compareBtn = h("button", { class: "cw-grid-compare", disabled: true, text: "Compare" });
    const clearBtn = h("button", { class: "cw-grid-clear", text: "Clear", title: "Clear the selection" });
    const sizeSelect = h("select", { class: "cw-grid-size", title: "Thumbnail size" });
    for (const key of Object.keys(SIZES)) sizeSelect.append(h("option", { value: key, text: key }));
    sizeSelect.value = size;
    const toolbar = h("div", { class: "cw-grid-toolbar" }, [
      axisSelect(model, "x", "X"),
      axisSelect(model, "y", "Y"),
      axisSelect(model, "page", "Page"),
      batchSelect(model),
      pager(model),
      h("label", { class: "cw-grid-field" }, [h("span", { text: "Size" }), sizeSelect]),
      h("span", { class: "cw-grid-spacer" }),
      compareBtn,
      clearBtn,
    ]);
    const status = h("div", { class: "cw-grid-status" });
    const viewer = h("div", { class: "cw-grid-viewer", hidden: true });
    const scroll = h("div", { class: "cw-grid-scroll" });
    root.append(toolbar, status, viewer, scroll);
    el.append(root);

    const cellByRow = () => new Map(model.get("cells").map((c) => [c.row, c]));

    function updateStatus() {
      const total = model.get("total");
      const shown = model.get("cells").length;
      const hint = picks.length ? `${picks.length}/2 picked for comparison` : "click an image for full size · tick two to compare";
      status.textContent = `${shown} of ${total} results · ${hint}`;
      compareBtn.disabled = picks.length !== 2;
      clearBtn.hidden = picks.length === 0;
      for (const box of scroll.querySelectorAll(".cw-grid-pick")) {
        box.checked = picks.includes(Number(box.dataset.row));
      }
    }

    function togglePick(row) {
      const at = picks.indexOf(row);
      if (at >= 0) picks.splice(at, 1);
      else {
        picks.push(row);
        if (picks.length > 2) picks.shift();
      }
      updateStatus();
    }

    function closeViewer() {
      viewer.hidden = true;
      viewer.replaceChildren();
      while (urls.length) URL.revokeObjectURL(urls.pop());
    }

    // build() runs after the previous view's object URLs are revoked, so it may make new ones.
    // With a filename, the last object URL build() made gets a Download link.
    function showViewer(title, build, filename) {
      closeViewer();
      const body = build();
      const close = h("button", { class: "cw-grid-close", title: "Close", text: "✕", onclick: closeViewer });
      const actions = h("span", { class: "cw-grid-actions" }, close);
      if (filename && urls.length) {
        const href = urls[urls.length - 1];
        actions.prepend(h("a", { class: "cw-grid-download", href, download: filename, text: "Download" }));
      }
      viewer.append(h("div", { class: "cw-grid-viewer-head" }, [h("span", { text: title }), actions]), body);
      viewer.hidden = false;
    }

    function media(buffer, mime, alt) {
      const url = blobUrl(buffer, mime);
      urls.push(url);
      if (mime.startsWith("video/")) {
        return h("video", { src: url, controls: true, autoplay: true, loop: true, muted: true });
      }
      if (mime.startsWith("audio/")) return h("audio", { src: url, controls: true });
      if (mime.startsWith("text/") || mime === "application/json") {
        const pre = h("pre", { class: "cw-grid-text" });
        new Blob([buffer]).text().then((text) => (pre.textContent = text));
        return pre;
      }
      return h("img", { src: url, alt });
    }

    function figure(cell) {
      const fig = h("figure", {
        class: `cw-grid-cell cw-status-${cell.status || "none"}`,
        title: cell.title,
        "data-row": cell.row,
      });
      const open = () => {
        showViewer("Loading…", () => h("div", { class: "cw-grid-loading", text: "Loading full size…" }));
        model.send({ type: "full", row: cell.row });
      };
      const visual = cell.src
        ? h("img", { class: "cw-grid-thumb", src: cell.src, alt: cell.title, loading: "lazy", onclick: open })
        : h("div", { class: "cw-grid-placeholder", text: cell.placeholder, onclick: open });
      fig.append(visual);
      if (cell.playable) fig.append(h("span", { class: "cw-grid-play", text: "▶", onclick: open }));
      if (cell.src) {
        const pick = h("input", { type: "checkbox", class: "cw-grid-pick", title: "Pick to compare", "data-row": cell.row });
        pick.addEventListener("change", () => togglePick(cell.row));
        fig.append(pick);
      }
      if (cell.caption) fig.append(h("figcaption", { text: cell.caption }));
      return fig;
    }

    function renderGrid() {
      const xs = model.get("x_labels");
      const ys = model.get("y_labels");
      const grid = new Map();
      for (const cell of model.get("cells")) {
        const key = `${cell.xi},${cell.yi}`;
        if (!grid.has(key)) grid.set(key, []);
        grid.get(key).push(cell);
      }
      const hasX = Boolean(model.get("x"));
      const hasY = Boolean(model.get("y"));
      const table = h("table", { class: "cw-grid-table" });
      if (hasX) {
        const head = h("tr", {}, hasY ? [h("th", { class: "cw-grid-corner" })] : []);
        for (const label of xs) head.append(h("th", { class: "cw-grid-xlabel", scope: "col", text: label }));
        table.append(h("thead", {}, head));
      }
      const body = h("tbody");
      ys.forEach((label, yi) => {
        const tr = h("tr", {}, hasY ? [h("th", { class: "cw-grid-ylabel", scope: "row", text: label })] : []);
        xs.forEach((_, xi) => {
          const items = grid.get(`${xi},${yi}`) ?? [];
          tr.append(h("td", { class: "cw-grid-td" }, h("div", { class: "cw-grid-stack" }, items.map(figure))));
        });
        body.append(tr);
      });
      table.append(body);
      scroll.replaceChildren(table);
      const known = cellByRow();
      for (let i = picks.length - 1; i >= 0; i--) if (!known.has(picks[i])) picks.splice(i, 1);
      updateStatus();
    }

    function onMessage(msg, buffers) {
      const cells = cellByRow();
      if (msg.type === "full") {
        const cell = cells.get(msg.row);
        const title = cell ? cell.title.split("\n").join(" · ") : `row ${msg.row}`;
        const build = () => h("div", { class: "cw-grid-full" }, media(buffers[0], msg.mime, title));
        showViewer(title, build, msg.filename);
      } else if (msg.type === "compare") {
        const names = [msg.a, msg.b].map((row) => cells.get(row)?.title.split("\n").join(" · ") ?? `row ${row}`);
        const pane = (buffer, caption) =>
          h("figure", { class: "cw-grid-pane" }, [media(buffer, "image/png", caption), h("figcaption", { text: caption })]);
        const percent = (msg.changed * 100).toFixed(msg.changed < 0.01 ? 2 : 1);
        showViewer(`Comparison: ${percent}% of pixels differ`, () =>
          h("div", { class: "cw-grid-compare-view" }, [
            pane(buffers[0], `A: ${names[0]}`),
            pane(buffers[1], `B: ${names[1]}`),
            pane(buffers[2], "Difference (red: changed)"),
          ]),
        );
      } else if (msg.type === "error") {
        showViewer("Error", () => h("div", { class: "cw-grid-error", text: msg.message }));
      }
    }

    compareBtn.addEventListener("click", () => {
      showViewer("Comparing…", () => h("div", { class: "cw-grid-loading", text: "Computing the difference…" }));
      model.send({ type: "compare", a: picks[0], b: picks[1] });
    });
    clearBtn.addEventListener("click", () => {
      picks.length = 0;
      updateStatus();
    });
    sizeSelect.addEventListener("change", () => {
      size = sizeSelect.value;
      root.style.setProperty("--cw-thumb", `${SIZES[size]}px`);
    });
    root.style.setProperty("--cw-thumb", `${SIZES[size]}px`);

    model.on("change:cells", renderGrid);
    model.on("change:x_labels", renderGrid);
    model.on("change:y_labels", renderGrid);
    model.on("msg:custom", onMessage);
    renderGrid();
    const onKey = (event) => {
      if (event.key === "Escape" && !viewer.hidden) closeViewer();
    };
    document.addEventListener("keydown", onKey);

    return () => {
      document.removeEventListener("keydown", onKey);
      model.off("msg:custom", onMessage);
      model.off("change:cells", renderGrid);
      model.off("change:x_labels", renderGrid);
      model.off("change:y_labels", renderGrid);
      closeViewer();
    };
  },
};
