// ProgressView front end: status badge, progress bar, node timeline, live preview, final images
// with a lightbox, and a Cancel button. Plain ESM for anywidget; no framework, no build step.

const LABELS = {
  pending: "pending",
  queued: "queued",
  running: "running",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
};
const ACTIVE = new Set(["pending", "queued", "running"]);
const CHIP_MARKS = { cached: "↺ ", done: "✓ ", running: "▶ ", error: "✕ ", stopped: "■ ", pending: "" };

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtSeconds(s) {
  if (s < 0 || !Number.isFinite(s)) return "";
  s = Math.round(s);
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function blobUrl(view, mime) {
  if (!view || !view.byteLength) return "";
  return URL.createObjectURL(new Blob([view], { type: mime }));
}

function render({ model, el }) {
  const root = h("div", "cw-progress");
  const head = h("div", "cw-progress-head");
  const badge = h("span", "cw-badge");
  const pct = h("span", "cw-pct");
  const clock = h("span", "cw-clock");
  const cancel = h("button", "cw-cancel", "Cancel");
  cancel.type = "button";
  cancel.title = "Cancel this job (remove it from the queue or interrupt it)";
  head.append(badge, pct, clock, h("span", "cw-spacer"), cancel);

  const bar = h("div", "cw-bar");
  const fill = h("div", "cw-bar-fill");
  bar.append(fill);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");

  const detail = h("div", "cw-detail");
  const timeline = h("div", "cw-timeline");
  const error = h("div", "cw-error");
  const media = h("div", "cw-media");
  const preview = h("img", "cw-preview");
  preview.alt = "live preview";
  const gallery = h("div", "cw-gallery");
  media.append(preview, gallery);
  root.append(head, bar, detail, timeline, error, media);
  el.append(root);

  let previewUrl = "";
  let thumbUrls = [];
  let received = performance.now();
  let overlay = null;

  function tick() {
    const status = model.get("status");
    const since = ACTIVE.has(status) && status !== "pending" ? (performance.now() - received) / 1000 : 0;
    const elapsed = model.get("elapsed") + since;
    const verb = status === "queued" ? "waiting" : ACTIVE.has(status) ? "elapsed" : "took";
    let text = elapsed > 0 ? `${verb} ${fmtSeconds(elapsed)}` : "";
    const eta = model.get("eta");
    if (status === "running" && eta >= 0) text += ` · ETA ${fmtSeconds(Math.max(0, eta - since))}`;
    clock.textContent = text;
  }

  function renderStatus() {
    received = performance.now();
    const status = model.get("status");
    const progress = model.get("progress");
    root.dataset.status = status;
    badge.textContent = LABELS[status] || status;
    badge.className = `cw-badge cw-badge-${status}`;
    pct.textContent = `${Math.floor(progress)} %`;
    fill.style.width = `${Math.max(0, Math.min(100, progress))}%`;
    bar.setAttribute("aria-valuenow", String(Math.round(progress)));
    cancel.hidden = !ACTIVE.has(status);

    const position = model.get("queue_position");
    if (status === "queued") {
      detail.textContent = position === 0 ? "Queued: next to run" : position > 0 ? `Queued: ${position} ahead` : "Queued";
    } else if (status === "running") {
      const node = model.get("current_node");
      detail.textContent = node ? `Running ${node}` : "Running";
    } else {
      detail.textContent = "";
    }

    const message = model.get("error");
    error.hidden = !message;
    error.textContent = "";
    if (message) {
      const where = model.get("error_node");
      error.append(h("strong", "", where ? `Failed in ${where}: ` : "Failed: "), document.createTextNode(message));
    }
    tick();
  }

  function renderTimeline() {
    const nodes = model.get("nodes");
    const seen = new Map();
    for (const n of nodes) seen.set(n.title, (seen.get(n.title) || 0) + 1);
    timeline.replaceChildren(
      ...nodes.map((n) => {
        // two nodes with one title (both prompts are "CLIP Text Encode") are told apart by id
        const name = seen.get(n.title) > 1 ? `${n.title} #${n.id}` : n.title;
        const chip = h("span", `cw-chip cw-chip-${n.state}`, `${CHIP_MARKS[n.state] ?? ""}${name}`);
        chip.title = `#${n.id} ${n.title}: ${n.state}`;
        chip.dataset.state = n.state;
        return chip;
      }),
    );
  }

  function renderPreview() {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = blobUrl(model.get("preview"), model.get("preview_mime"));
    const show = previewUrl && model.get("status") === "running";
    preview.hidden = !show;
    if (show) preview.src = previewUrl;
  }

  function renderImages() {
    thumbUrls.forEach((u) => URL.revokeObjectURL(u));
    thumbUrls = model.get("thumbnails").map((v) => blobUrl(v, "image/jpeg"));
    gallery.replaceChildren(
      ...thumbUrls.map((url, index) => {
        const img = h("img", "cw-thumb");
        img.src = url;
        img.alt = `output image ${index + 1}`;
        img.title = "Click to open full size";
        img.addEventListener("click", () => openLightbox(index));
        return img;
      }),
    );
    preview.hidden = thumbUrls.length > 0 || preview.hidden;
  }

  function openLightbox(index) {
    closeLightbox();
    overlay = h("div", "cw-lightbox");
    const img = h("img", "cw-lightbox-img");
    img.src = thumbUrls[index];
    img.alt = `output image ${index + 1}, full size`;
    const close = h("button", "cw-lightbox-close", "×");
    close.type = "button";
    close.title = "Close";
    overlay.append(img, close);
    overlay.dataset.index = String(index);
    overlay.addEventListener("click", closeLightbox);
    document.body.append(overlay);
    try {
      model.send({ type: "full", index }); // no kernel (static export): the thumbnail stays
    } catch (err) {
      console.debug("comfy_widgets: full image unavailable", err);
    }
  }

  function closeLightbox() {
    if (!overlay) return;
    const img = overlay.querySelector("img");
    if (img && img.dataset.full) URL.revokeObjectURL(img.src);
    overlay.remove();
    overlay = null;
  }

  function onKey(event) {
    if (event.key === "Escape") closeLightbox();
  }

  function onCustom(msg, buffers) {
    if (msg.type !== "full" || !overlay || overlay.dataset.index !== String(msg.index)) return;
    const img = overlay.querySelector("img");
    img.src = blobUrl(buffers[0], msg.mime);
    img.dataset.full = "1";
  }

  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    model.send({ type: "cancel" });
  });

  const onStatus = () => {
    renderStatus();
    renderPreview();
  };
  model.on("change:status", onStatus);
  for (const name of ["progress", "current_node", "queue_position", "elapsed", "eta", "error", "error_node"]) {
    model.on(`change:${name}`, renderStatus);
  }
  model.on("change:nodes", renderTimeline);
  model.on("change:preview", renderPreview);
  model.on("change:thumbnails", renderImages);
  model.on("msg:custom", onCustom);
  document.addEventListener("keydown", onKey);
  const timer = setInterval(tick, 500);

  renderStatus();
  renderTimeline();
  renderPreview();
  renderImages();

  return () => {
    clearInterval(timer);
    document.removeEventListener("keydown", onKey);
    closeLightbox();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    thumbUrls.forEach((u) => URL.revokeObjectURL(u));
  };
}

export default { render };
