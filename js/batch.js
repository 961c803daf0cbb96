// BatchView front end: a summary bar with Stop remaining, and one card per batch item with its
// status, progress bar and thumbnail (live preview while running, first image once done).

const FINISHED = ["completed", "partial", "cancelled", "failed"];

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
    const grid = h("div", "cw-batch-cards");
    root.append(head, bar, pool, grid);
    el.append(root);

    const cards = [];
    const urls = new Map();
    let receivedAt = performance.now();

    function card(i) {
      const node = h("div", "cw-batch-card");
      const thumb = h("div", "cw-batch-thumb");
      const img = h("img");
      img.alt = `item ${i}`;
      img.hidden = true;
      thumb.append(img);
      const progress = h("div", "cw-batch-card-bar");
      const progressFill = h("div", "cw-batch-card-fill");
      progress.append(progressFill);
      const status = h("div", "cw-batch-card-status");
      const label = h("div", "cw-batch-card-label");
      const server = h("div", "cw-batch-card-server");
      node.append(thumb, progress, status, label, server);
      return { node, img, progressFill, status, label, server };
    }

    function updateCards() {
      const labels = model.get("labels");
      const statuses = model.get("statuses");
      const progress = model.get("progress");
      const errors = model.get("errors");
      const itemServers = model.get("item_servers");
      const pooled = model.get("servers").length > 1;
      while (cards.length < statuses.length) {
        const c = card(cards.length);
        cards.push(c);
        grid.append(c.node);
      }
      statuses.forEach((status, i) => {
        const c = cards[i];
        const pct = progress[i] ?? 0;
        c.node.className = `cw-batch-card cw-item-${status}`;
        c.progressFill.style.width = `${pct}%`;
        const detail = status === "running" ? ` ${Math.round(pct)}%` : "";
        c.status.textContent = `#${i} ${status}${detail}`;
        // one line per varied value, so a long seed wraps instead of being cut off
        c.label.replaceChildren(...(labels[i] ?? "").split(" · ").map((part) => h("div", "", part)));
        c.server.textContent = pooled ? serverName(itemServers[i] ?? "") : "";
        c.node.title = [labels[i], itemServers[i], errors[i]].filter(Boolean).join("\n");
      });
    }

    function updateSummary() {
      const status = model.get("batch_status");
      const total = model.get("total");
      const completed = model.get("completed");
      const failed = model.get("failed");
      const progress = model.get("progress");
      const statuses = model.get("statuses");
      badge.textContent = status;
      badge.className = `cw-batch-badge cw-item-${status}`;
      const cancelled = statuses.filter((s) => s === "cancelled").length;
      const parts = [`${completed}/${total} completed`];
      if (failed) parts.push(`${failed} failed`);
      if (cancelled) parts.push(`${cancelled} cancelled`);
      counts.textContent = parts.join(" · ");
      const done = progress.reduce((sum, p, i) => sum + (statuses[i] === "failed" || statuses[i] === "cancelled" ? 100 : p), 0);
      fill.style.width = `${total ? done / total : 0}%`;
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

    function onMessage(msg, buffers) {
      if (msg.type !== "thumbs") return;
      msg.indexes.forEach((index, k) => {
        const c = cards[index];
        if (!c) return;
        if (urls.has(index)) URL.revokeObjectURL(urls.get(index));
        const url = URL.createObjectURL(new Blob([buffers[k]], { type: msg.mimes[k] }));
        urls.set(index, url);
        c.img.src = url;
        c.img.hidden = false;
        c.img.classList.toggle("cw-batch-preview", !msg.final[k]);
      });
    }

    stop.addEventListener("click", () => {
      stop.disabled = true;
      stop.textContent = "Stopping…";
      model.send({ type: "stop" });
    });

    const update = () => {
      updateCards();
      updateSummary();
      updateServers();
    };
    const names = ["statuses", "progress", "errors", "labels", "batch_status", "completed", "failed", "elapsed", "stopping", "servers", "item_servers"];
    for (const name of names) model.on(`change:${name}`, update);
    model.on("msg:custom", onMessage);
    update();
    model.send({ type: "ready" });
    const timer = setInterval(tick, 500);

    return () => {
      clearInterval(timer);
      for (const name of names) model.off(`change:${name}`, update);
      model.off("msg:custom", onMessage);
      for (const url of urls.values()) URL.revokeObjectURL(url);
    };
  },
};
