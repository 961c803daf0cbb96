"""ProgressView: the live status of one Job in the notebook (anywidget, js/progress.js).

It listens to ``job.subscribe`` and sends the browser at most 20 updates a second (previews at most
5 a second) however fast the server talks, and it carries a static HTML fallback so a saved notebook
still shows the last state where widgets do not run (GitHub, nbviewer, HTML export).
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence
from typing import Any

import anywidget
import traitlets

from comfy_widgets.results import gridimage
from comfy_widgets.widgets.assets import asset
from comfy_widgets.widgets.fallback import LIVE_CLASS, StaticTwin
from comfy_widgets.widgets.throttle import Throttle

MESSAGE_RATE = 20.0
PREVIEW_RATE = 5.0
THUMBNAIL_SIZE = 256
TERMINAL = ("completed", "failed", "cancelled")


def _node_title(job: Any, node_id: str | None) -> str:
    """The title of ``node_id`` in the job's graph, else its id (or '' for None)."""
    if not node_id:
        return ""
    node = (getattr(job, "nodes", None) or {}).get(node_id)
    title = getattr(node, "title", None) if node is not None else None
    return f"{title} (#{node_id})" if title else f"#{node_id}"


def _elapsed_and_eta(job: Any, status: str, progress: float, now: float) -> tuple[float, float]:
    """Seconds spent so far (waiting while queued, running after) and the time left (-1)."""
    timings = getattr(job, "timings", None) or {}
    started = timings.get("started_at")
    finished = timings.get("finished_at")
    start = started if started else timings.get("queued_at")
    if not start:
        return 0.0, -1.0
    elapsed = max(0.0, (finished or now) - start)
    if status != "running" or not started or progress <= 0 or progress >= 100:
        return elapsed, -1.0
    return elapsed, elapsed * (100.0 - progress) / progress


def _chip_state(node_state: str, job_status: str) -> str:
    """A node still marked running in an ended job was stopped there (or failed there)."""
    if node_state == "running" and job_status in TERMINAL:
        return "error" if job_status == "failed" else "stopped"
    return node_state


def _execution_order(nodes: dict[str, Any]) -> list[tuple[str, Any]]:
    """Nodes as they ran: cached ones, then started ones by start time, then the pending ones."""

    def key(item: tuple[int, tuple[str, Any]]) -> tuple[int, float, int]:
        index, (_nid, node) = item
        started = getattr(node, "started_at", None)
        if node.state == "cached":
            return (0, 0.0, index)
        return (1, started, index) if started else (2, 0.0, index)

    return [item for _, item in sorted(enumerate(nodes.items()), key=key)]


def job_snapshot(job: Any, now: float | None = None) -> dict[str, Any]:
    """The widget's view of ``job`` as plain JSON values (no images): what the browser shows."""
    status = getattr(job, "state", "pending") or "pending"
    progress = float(getattr(job, "progress", 0.0) or 0.0)
    if status == "completed":
        progress = 100.0
    elapsed, eta = _elapsed_and_eta(job, status, progress, time.time() if now is None else now)
    nodes = [
        {
            "id": str(nid),
            "title": getattr(n, "title", None) or str(nid),
            "state": _chip_state(n.state, status),
        }
        for nid, n in _execution_order(getattr(job, "nodes", None) or {})
    ]
    position = getattr(job, "queue_position", None)
    return {
        "prompt_id": str(getattr(job, "prompt_id", "") or ""),
        "status": status,
        "progress": round(progress, 2),
        "current_node": (getattr(job, "current_node_title", None) or "")
        if status == "running"
        else "",
        "nodes": nodes,
        "queue_position": -1 if position is None or status != "queued" else int(position),
        "elapsed": round(elapsed, 1),
        "eta": round(eta, 1),
        "error": (getattr(job, "error_message", None) or "") if status == "failed" else "",
        "error_node": _node_title(job, getattr(job, "error_node", None))
        if status == "failed"
        else "",
    }


def image_outputs(job: Any) -> list[Any]:
    """The job's image outputs that carry data, in output order."""
    return [
        o
        for o in (getattr(job, "outputs", None) or [])
        if getattr(o, "kind", "") == "image" and getattr(o, "data", None)
    ]


class ProgressView(StaticTwin, anywidget.AnyWidget):
    """Live status of a ComfyUI job: badge, progress, node timeline, preview, images, Cancel."""

    _esm = asset("progress.js")
    _css = asset("progress.css")

    prompt_id = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("pending").tag(sync=True)
    progress = traitlets.Float(0.0).tag(sync=True)
    current_node = traitlets.Unicode("").tag(sync=True)
    nodes = traitlets.List(traitlets.Dict()).tag(sync=True)
    queue_position = traitlets.Int(-1).tag(sync=True)
    elapsed = traitlets.Float(0.0).tag(sync=True)
    eta = traitlets.Float(-1.0).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    error_node = traitlets.Unicode("").tag(sync=True)
    preview = traitlets.Bytes(b"").tag(sync=True)
    preview_mime = traitlets.Unicode("image/jpeg").tag(sync=True)
    thumbnails = traitlets.List(traitlets.Bytes()).tag(sync=True)

    def __init__(self, job: Any, **kwargs: Any) -> None:
        self.job = job
        self._thumb_count = 0
        self._last_preview: bytes | None = None
        initial = job_snapshot(job)
        initial.update(self._image_state(job) or {})
        super().__init__(**initial, **kwargs)
        self.add_class(LIVE_CLASS)
        self._preview_throttle = Throttle(self._queue_preview, PREVIEW_RATE)
        self._throttle = Throttle(self._apply, MESSAGE_RATE)
        self.on_msg(self._on_browser_message)
        self._unsubscribe = job.subscribe(self._on_job_change)
        self._throttle.push({"job": True})  # catch up with changes made before subscribing

    # --- job -> browser -------------------------------------------------------------------

    def _on_job_change(self, job: Any) -> None:
        preview = getattr(job, "preview", None)
        if preview and preview is not self._last_preview and job.state == "running":
            self._last_preview = preview
            mime = getattr(job, "preview_mime", None) or "image/jpeg"
            self._preview_throttle.push({"preview": preview, "preview_mime": mime})
        self._throttle.push({"job": True})

    def _queue_preview(self, batch: dict[str, Any]) -> None:
        self._throttle.push(batch)

    def _apply(self, batch: dict[str, Any]) -> None:
        """Bring every trait up to date with the job in one comm message."""
        state = job_snapshot(self.job)
        state.update(self._image_state(self.job) or {})
        if "preview" in batch and state["status"] == "running":
            state["preview"] = batch["preview"]
            state["preview_mime"] = batch["preview_mime"]
        elif state["status"] in TERMINAL:
            state["preview"] = b""  # the final images replace it; keep saved state small
        with self.hold_sync():
            for name, value in state.items():
                setattr(self, name, value)
        self._refresh_static_output()

    def _image_state(self, job: Any) -> dict[str, Any] | None:
        """Thumbnails of final images, computed once when new outputs appear."""
        outputs = image_outputs(job)
        if len(outputs) == self._thumb_count:
            return None
        self._thumb_count = len(outputs)
        return {"thumbnails": [gridimage.thumbnail_jpeg(o.data, THUMBNAIL_SIZE) for o in outputs]}

    # --- browser -> job -------------------------------------------------------------------

    def _on_browser_message(self, _widget: Any, content: dict[str, Any], _buffers: list) -> None:
        kind = content.get("type")
        if kind == "cancel":
            self.job.cancel()
        elif kind == "full":
            self._send_full_image(int(content.get("index", 0)))

    def _send_full_image(self, index: int) -> None:
        outputs = image_outputs(self.job)
        if 0 <= index < len(outputs):
            out = outputs[index]
            mime = getattr(out, "mime", None) or "image/png"
            self.send({"type": "full", "index": index, "mime": mime}, [out.data])

    # --- static fallback ------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        data["text/html"] = self.static_html()
        data["text/plain"] = self.twin_text()
        return data, metadata

    def twin_text(self) -> str:
        """One line for text-only viewers: status, percent, prompt id."""
        return f"<ProgressView {self.status} {self.progress:.0f}% {self.prompt_id}>"

    def fallback_status(self) -> str:
        """What rewrites the twin when it changes: the status and the number of images."""
        return f"{self.status} {len(self.thumbnails)}"

    def static_html(self) -> str:
        """The current state as self-contained HTML (inline styles, images as data URIs)."""
        return render_static_html(job_snapshot(self.job), self.thumbnails, key_parameters(self.job))

    def close(self) -> None:
        """Stop listening to the job and close the widget."""
        if hasattr(self, "_throttle"):
            self._unsubscribe()
            self._throttle.close()
            self._preview_throttle.close()
        super().close()


_BADGE_COLORS = {
    "pending": "var(--jp-layout-color3, #9e9e9e)",
    "queued": "var(--jp-warn-color1, #f57c00)",
    "running": "var(--jp-brand-color1, #1976d2)",
    "completed": "var(--jp-success-color1, #388e3c)",
    "failed": "var(--jp-error-color1, #d32f2f)",
    "cancelled": "var(--jp-layout-color4, #616161)",
}


def key_parameters(job: Any, limit: int = 8, width: int = 60) -> list[tuple[str, str]]:
    """The values the job was asked to run with (name, short text), the first ``limit``."""
    out = []
    for name, value in list((getattr(job, "parameters", None) or {}).items())[:limit]:
        if isinstance(value, (bytes, bytearray, memoryview)):
            text = f"<image, {len(value)} bytes>"
        else:
            text = str(value)
        out.append((str(name), text if len(text) <= width else text[: width - 1] + "…"))
    return out


def render_static_html(
    state: dict[str, Any], thumbnails: list[bytes], parameters: Sequence[tuple[str, str]] = ()
) -> str:
    """HTML for places without a widget manager: badge, percent, time, bar, parameters, error,
    image thumbnails (inline styles only: exports and GitHub load no style sheet of ours)."""
    esc = html.escape
    status = state["status"]
    pct = state["progress"]
    elapsed = state.get("elapsed") or 0.0
    clock = f" · took {elapsed:.1f} s" if status in TERMINAL and elapsed > 0 else ""
    badge = (
        f'<span style="background:{_BADGE_COLORS.get(status, "#9e9e9e")};color:#fff;'
        f'border-radius:3px;padding:1px 6px;font-weight:600">{esc(status)}</span>'
    )
    bar = (
        '<div style="height:8px;background:var(--jp-layout-color2,#eee);border-radius:4px;'
        'overflow:hidden;margin:4px 0"><div style="height:100%;width:'
        f'{pct:.0f}%;background:var(--jp-brand-color1,#1976d2)"></div></div>'
    )
    parts = [
        f'<div class="cw-progress-static" data-status="{esc(status)}" '
        'style="font-family:var(--jp-ui-font-family,sans-serif);font-size:13px">',
        f'<div>{badge} <b class="cw-static-pct">{pct:.0f}%</b>{clock} '
        f"<code>{esc(state['prompt_id'])}</code></div>",
        bar,
    ]
    if parameters:
        parts.append(
            '<div class="cw-static-params" style="color:var(--jp-ui-font-color2,#616161)">'
            + " · ".join(f"{esc(k)}: {esc(v)}" for k, v in parameters)
            + "</div>"
        )
    if state["error"]:
        where = f" in {esc(state['error_node'])}" if state["error_node"] else ""
        parts.append(
            f'<div style="color:var(--jp-error-color1,#d32f2f)">Failed{where}: '
            f"{esc(state['error'])}</div>"
        )
    for thumb in thumbnails:
        uri = "data:image/jpeg;base64," + base64.b64encode(thumb).decode("ascii")
        parts.append(
            f'<img src="{uri}" style="max-width:256px;margin:2px" alt="output image"'
            ' class="cw-static-image"/>'
        )
    parts.append("</div>")
    return "".join(parts)
