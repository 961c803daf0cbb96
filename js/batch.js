// BatchView front end: a summary bar with Stop remaining, and a card per batch item with its
// status, progress bar and thumbnail (live preview while running, first image once done).
// The grid is virtualised: item state lives in arrays, and only the cards in (or near) the
// visible rows are in the DOM, so a 10,000-item batch scrolls and updates smoothly. Python sends
// only the items that changed ({type: "items"}); a new view says "ready" and gets them all once.
// Finished items' pictures are asked for when their card is shown ({type: "thumbs"}), so a
// 10,000-item batch makes and sends only the thumbnails someone scrolls to.

const FINISHED = ["completed", "partial", "cancelled", "failed"];
const PICTURED = new Set(["completed", "failed", "cancelled"]); // Python's JOB_DONE
const CARD_MIN_WIDTH = 112; // matches .cw-batch-cards' minmax()
const GAP = 6;
const VIRTUAL_FROM = 48; // smaller batches show every card, without a scroll box
const BUFFER_ROWS = 2;

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function serverName(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

function formatSeconds(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export default {
  render({ model, el }) {
    const root = h("div", "cw-batch");
    const head = h("div", "cw-batch-head");
    const badge = h("span", "cw-batch-badge");
    const counts = h("span", "cw-batch-counts");
    const elapsed = h("span", "cw-batch-elapsed");
    const stop = h("button", "cw-batch-stop", "Stop remaining");
    stop.title = "Remove the queued items from the server";
    const bar = h("div", "cw-batch-bar");
    const fill = h("div", "cw-batch-bar-fill");
    bar.append(fill);
    head.append(badge, counts, elapsed, h("span", "cw-batch-spacer"), stop);
    const pool = h("div", "cw-batch-servers");
    const scroller = h("div", "cw-batch-scroll");
    const sizer = h("div", "cw-batch-sizer");
    const grid = h("div", "cw-batch-cards");
    sizer.append(grid);
    scroller.append(sizer);
    root.append(head, bar, pool, scroller);
    el.append(root);

    const total = () => model.get("total");
    const statuses = [];
    const progress = [];
    const errors = [];
    const itemServers = [];
    const thumbs = new Map(); // index -> {url, final}
    const asked = new Set(); // indexes whose final picture was asked for
    let wanted = [];
    const shown = new Map(); // index -> card, the cards in the DOM
    let rowHeight = 0;
    let receivedAt = performance.now();
    let frame = 0;

    function ensureLength() {
      while (statuses.length < total()) {
        statuses.push("pending");
        progress.push(0);
        errors.push("");
        itemServers.push("");
      }
    }

    function card(i) {
      const node = h("div", "cw-batch-card");
      const thumb = h("div", "cw-batch-thumb");
      const img = h("img");
      img.alt = `item ${i}`;
      img.hidden = true;
      thumb.append(img);
      const bar = h("div", "cw-batch-card-bar");
      const barFill = h("div", "cw-batch-card-fill");
      bar.append(barFill);
      const status = h("div", "cw-batch-card-status");
      const label = h("div", "cw-batch-card-label");
      const server = h("div", "cw-batch-card-server");
      node.append(thumb, bar, status, label, server);
      const labels = model.get("labels");
      // one line per varied value, so a long seed wraps instead of being cut off
      label.replaceChildren(...(labels[i] ?? "").split(" · ").map((part) => h("div", "", part)));
      return { index: i, node, img, barFill, status, server, label: labels[i] ?? "" };
    }

    function fillCard(c) {
      const i = c.index;
      const status = statuses[i];
      const pct = progress[i] ?? 0;
      c.node.className = `cw-batch-card cw-item-${status}`;
      c.barFill.style.width = `${pct}%`;
      const detail = status === "running" ? ` ${Math.round(pct)}%` : "";
      c.status.textContent = `#${i} ${status}${detail}`;
      const pooled = model.get("servers").length > 1;
      c.server.textContent = pooled ? serverName(itemServers[i] ?? "") : "";
      c.node.title = [c.label, itemServers[i], errors[i]].filter(Boolean).join("\n");
      const thumb = thumbs.get(i);
      if (PICTURED.has(status) && !thumb?.final && !asked.has(i)) {
        asked.add(i);
        wanted.push(i);
      }
      if (thumb && c.img.src !== thumb.url) {
        c.img.src = thumb.url;
        c.img.hidden = false;
        c.img.classList.toggle("cw-batch-preview", !thumb.final);
      }
    }

    function columns() {
      const width = grid.clientWidth || scroller.clientWidth || CARD_MIN_WIDTH;
      return Math.max(1, Math.floor((width + GAP) / (CARD_MIN_WIDTH + GAP)));
    }

    function visibleRange() {
      const n = total();
      const virtual = n >= VIRTUAL_FROM;
      scroller.classList.toggle("cw-batch-virtual", virtual);
      if (!virtual || !rowHeight) return [0, virtual ? Math.min(n, VIRTUAL_FROM) : n, 0];
      const cols = columns();
      const rows = Math.ceil(n / cols);
      sizer.style.height = `${rows * rowHeight}px`;
      const first = Math.max(0, Math.floor(scroller.scrollTop / rowHeight) - BUFFER_ROWS);
      const visibleRows = Math.ceil((scroller.clientHeight || 480) / rowHeight) + 2 * BUFFER_ROWS;
      return [first * cols, Math.min(n, (first + visibleRows) * cols), first * rowHeight];
    }

    function renderCards() {
      frame = 0;
      ensureLength();
      const [start, end, offset] = visibleRange();
      for (const [i, c] of shown) {
        if (i < start || i >= end) shown.delete(i);
      }
      const nodes = [];
      for (let i = start; i < end; i++) {
        let c = shown.get(i);
        if (!c) {
          c = card(i);
          shown.set(i, c);
        }
        fillCard(c);
        nodes.push(c.node);
      }
      grid.replaceChildren(...nodes);
      grid.style.transform = offset ? `translateY(${offset}px)` : "";
      if (!scroller.classList.contains("cw-batch-virtual")) sizer.style.height = "";
      // the row height comes from real cards (their labels may wrap): measure, re-render if new
      const measured = nodes.reduce((m, n) => Math.max(m, n.offsetHeight), 0);
      if (measured && measured + GAP > rowHeight && total() >= VIRTUAL_FROM) {
        rowHeight = measured + GAP;
        schedule();
      }
      askPictures();
    }

    function askPictures() {
      if (!wanted.length) return;
      model.send({ type: "thumbs", indexes: wanted });
      wanted = [];
    }

    function schedule() {
      if (!frame) frame = requestAnimationFrame(renderCards);
    }

    function updateSummary() {
      const status = model.get("batch_status");
      const completed = model.get("completed");
      const failed = model.get("failed");
      const cancelled = model.get("cancelled");
      badge.textContent = status;
      badge.className = `cw-batch-badge cw-item-${status}`;
      const parts = [`${completed}/${total()} completed`];
      if (failed) parts.push(`${failed} failed`);
      if (cancelled) parts.push(`${cancelled} cancelled`);
      const current = model.get("current");
      if (current && !FINISHED.includes(status)) parts.push(current);
      counts.textContent = parts.join(" · ");
      fill.style.width = `${model.get("done_percent")}%`;
      const finished = FINISHED.includes(status);
      stop.disabled = finished || model.get("stopping");
      stop.textContent = model.get("stopping") && !finished ? "Stopping…" : "Stop remaining";
      receivedAt = performance.now();
      tick();
    }

    // A pool: one line per server with what it runs and its throughput.
    function updateServers() {
      const servers = model.get("servers");
      pool.replaceChildren();
      pool.hidden = servers.length < 2;
      for (const s of servers) {
        const line = h("div", `cw-batch-server${s.down ? " cw-batch-server-down" : ""}`);
        const parts = [`${s.running} running`, `${s.queued} queued`, `${s.completed} done`];
        if (s.failed) parts.push(`${s.failed} failed`);
        parts.push(`${Number(s.per_minute).toFixed(1)}/min`);
        if (s.down) parts.push("down");
        line.append(h("b", "", `${serverName(s.url)} (${s.protocol})`), h("span", "", ` ${parts.join(" · ")}`));
        line.title = s.url;
        pool.append(line);
      }
    }

    function tick() {
      const running = !FINISHED.includes(model.get("batch_status")) && model.get("elapsed") > 0;
      const extra = running ? (performance.now() - receivedAt) / 1000 : 0;
      elapsed.textContent = formatSeconds(model.get("elapsed") + extra);
    }

    function onItems(msg) {
      ensureLength();
      let visible = false;
      msg.indexes.forEach((index, k) => {
        statuses[index] = msg.statuses[k];
        progress[index] = msg.progress[k];
        errors[index] = msg.errors[k];
        if (msg.servers) itemServers[index] = msg.servers[k];
        const c = shown.get(index);
        if (c) {
          fillCard(c);
          visible = true;
        }
      });
      askPictures();
      return visible;
    }

    function onThumbs(msg, buffers) {
      msg.indexes.forEach((index, k) => {
        const old = thumbs.get(index);
        if (old) URL.revokeObjectURL(old.url);
        const url = URL.createObjectURL(new Blob([buffers[k]], { type: msg.mimes[k] }));
        thumbs.set(index, { url, final: msg.final[k] });
        const c = shown.get(index);
        if (c) fillCard(c);
      });
    }

    function onMessage(msg, buffers) {
      if (msg.type === "items") onItems(msg);
      else if (msg.type === "thumbs") onThumbs(msg, buffers);
    }

    stop.addEventListener("click", () => {
      stop.disabled = true;
      stop.textContent = "Stopping…";
      model.send({ type: "stop" });
    });

    const names = ["batch_status", "completed", "failed", "cancelled", "done_percent", "elapsed", "stopping", "total", "current"];
    for (const name of names) model.on(`change:${name}`, updateSummary);
    const relabel = () => {
      shown.clear();
      schedule();
    };
    model.on("change:labels", relabel);
    model.on("change:servers", updateServers);
    model.on("msg:custom", onMessage);
    scroller.addEventListener("scroll", schedule, { passive: true });
    const resized = new ResizeObserver(schedule);
    resized.observe(scroller);
    updateSummary();
    updateServers();
    renderCards();
    model.send({ type: "ready" });
    const timer = setInterval(tick, 500);

    return () => {
      clearInterval(timer);
      resized.disconnect();
      if (frame) cancelAnimationFrame(frame);
      for (const name of names) model.off(`change:${name}`, updateSummary);
      model.off("change:labels", relabel);
      model.off("change:servers", updateServers);
      model.off("msg:custom", onMessage);
      for (const thumb of thumbs.values()) URL.revokeObjectURL(thumb.url);
    };
  },
};
