"""BatchView: live progress of a whole batch, one card per item, a summary and Stop remaining.

Per-item status and progress are small list traitlets sent at most 20 times a second; thumbnails
(live previews while an item runs, its first image once done) go as binary custom messages, each
picture once, so a long sweep does not resend every picture on every update.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from typing import Any

import anywidget
import traitlets

from comfy_widgets.results import gridimage
from comfy_widgets.widgets.assets import asset
from comfy_widgets.widgets.fallback import LIVE_CLASS, StaticTwin
from comfy_widgets.widgets.throttle import Throttle

log = logging.getLogger(__name__)
MESSAGE_RATE = 20.0
PREVIEW_RATE = 4.0
THUMB_SIZE = 128
FINISHED = ("completed", "partial", "cancelled", "failed")
JOB_DONE = ("completed", "failed", "cancelled")


class BatchView(StaticTwin, anywidget.AnyWidget):
    """Cards with each item's status, progress and thumbnail; a summary; a Stop remaining button."""

    _esm = asset("batch.js")
    _css = asset("batch.css")

    batch_id = traitlets.Unicode("").tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    statuses = traitlets.List(traitlets.Unicode()).tag(sync=True)
    progress = traitlets.List(traitlets.Float()).tag(sync=True)
    errors = traitlets.List(traitlets.Unicode()).tag(sync=True)
    batch_status = traitlets.Unicode("pending").tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    completed = traitlets.Int(0).tag(sync=True)
    failed = traitlets.Int(0).tag(sync=True)
    elapsed = traitlets.Float(0.0).tag(sync=True)
    stopping = traitlets.Bool(False).tag(sync=True)
    # a pool: one dict per server (url, protocol, counts, per_minute), and each item's server
    servers = traitlets.List(traitlets.Dict()).tag(sync=True)
    item_servers = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, batch: Any, **kwargs: Any) -> None:
        self.batch = batch
        self._thumbs: dict[int, tuple[str, bytes, bool]] = {}  # index -> (mime, bytes, final)
        self._watched: dict[int, Any] = {}
        self._unreadable: set[int] = set()
        self._unsubscribers: list[Any] = []
        batch_id = str(getattr(batch, "id", ""))
        super().__init__(batch_id=batch_id, labels=item_labels(batch), **kwargs)
        self.add_class(LIVE_CLASS)
        self._throttle = Throttle(self._apply, MESSAGE_RATE)
        self._previews = Throttle(self._send_previews, PREVIEW_RATE)
        self.on_msg(self._on_msg)
        self._apply({})
        self._unsubscribers.append(batch.subscribe(self._on_change))

    # --- batch -> browser ---------------------------------------------------------------------

    def _on_change(self, *_args: Any) -> None:
        """Called on the loop thread after any change of the batch or of one of its jobs."""
        self._watch_new_jobs()
        previews = {}
        for index, job in self._watched.items():
            preview = getattr(job, "preview", None)
            known = self._thumbs.get(index)
            if getattr(job, "state", "") == "running" and preview and not (known and known[2]):
                if known is None or known[1] is not preview:
                    previews[index] = (getattr(job, "preview_mime", None) or "image/jpeg", preview)
        if previews:
            self._previews.push(previews)
        self._throttle.push({"update": True})

    def _watch_new_jobs(self) -> None:
        """Map item index -> Job for the jobs created so far (the batch reports their changes)."""
        for position, job in enumerate(list(getattr(self.batch, "jobs", None) or [])):
            if job is not None:
                self._watched.setdefault(_index_of(job, position), job)

    def _apply(self, _changes: dict[str, Any]) -> None:
        """Bring every trait up to date with the batch in one comm message."""
        self._watch_new_jobs()
        state = self.snapshot()
        new_thumbs = self._final_thumbnails()
        with self.hold_sync():
            for name, value in state.items():
                setattr(self, name, value)
        if new_thumbs:
            self._send_thumbs(new_thumbs)
        self._refresh_static_output()

    def snapshot(self) -> dict[str, Any]:
        """The browser's view of the batch as plain JSON values (no pictures)."""
        total = int(getattr(self.batch, "total", 0) or len(self.labels))
        status = str(getattr(self.batch, "status", "pending"))
        jobs = [self._watched.get(i) for i in range(total)]
        statuses = [item_status(job, status) for job in jobs]
        progress = [item_progress(job) for job in jobs]
        errors = [str(getattr(job, "error_message", "") or "") for job in jobs]
        return {
            "batch_status": status,
            "total": total,
            "completed": int(getattr(self.batch, "completed_count", statuses.count("completed"))),
            "failed": int(getattr(self.batch, "failed_count", statuses.count("failed"))),
            "statuses": statuses,
            "progress": progress,
            "errors": errors,
            "elapsed": round(self._elapsed(status), 1),
            **server_columns(self.batch, jobs),
        }

    def _elapsed(self, status: str) -> float:
        """Seconds from the first item queued to the last one finished (or to now while running)."""
        timings = [getattr(job, "timings", None) or {} for job in self._watched.values()]
        starts = [t["queued_at"] for t in timings if t.get("queued_at")]
        if not starts:
            return 0.0
        ends = [t["finished_at"] for t in timings if t.get("finished_at")]
        end = max(ends) if status in FINISHED and ends else time.time()
        return max(0.0, end - min(starts))

    def _final_thumbnails(self) -> dict[int, tuple[str, bytes, bool]]:
        """Thumbnails of items that finished since the last update (each made once)."""
        new = {}
        for index, job in self._watched.items():
            known = self._thumbs.get(index)
            if (known and known[2]) or index in self._unreadable:
                continue
            if getattr(job, "state", "") not in JOB_DONE:
                continue
            data = first_image_bytes(job)
            if data is None:
                continue
            try:
                new[index] = ("image/jpeg", gridimage.thumbnail_jpeg(data, THUMB_SIZE), True)
            except Exception:  # an image Pillow cannot read keeps its card without a picture
                log.warning("no thumbnail for batch item %s", index, exc_info=True)
                self._unreadable.add(index)
        return new

    def _send_previews(self, previews: dict[int, tuple[str, bytes]]) -> None:
        fresh = {
            index: (mime, data, False)
            for index, (mime, data) in previews.items()
            if not (self._thumbs.get(index) or ("", b"", False))[2]
        }
        if fresh:
            self._send_thumbs(fresh)

    def _send_thumbs(self, thumbs: dict[int, tuple[str, bytes, bool]]) -> None:
        self._thumbs.update(thumbs)
        indexes = sorted(thumbs)
        self.send(
            {
                "type": "thumbs",
                "indexes": indexes,
                "mimes": [thumbs[i][0] for i in indexes],
                "final": [thumbs[i][2] for i in indexes],
            },
            [thumbs[i][1] for i in indexes],
        )

    # --- browser -> batch ---------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        kind = content.get("type")
        if kind == "stop":
            self.stop()
        elif kind == "ready" and self._thumbs:
            self._send_thumbs(dict(self._thumbs))

    def stop(self) -> None:
        """Stop the remaining items (thread-safe: `batch.stop` hands the work to the loop)."""
        self.stopping = True
        self.batch.stop()

    # --- static fallback ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The live widget plus a static HTML summary with thumbnails for shared notebooks."""
        data, metadata = super()._repr_mimebundle_(**kwargs) or ({}, {})
        data["text/plain"] = self.summary_text()
        data["text/html"] = self.static_html()
        return data, metadata

    def fallback_status(self) -> str:
        """What rewrites the twin when it changes: the status and the counts of ended items."""
        return f"{self.batch_status} {self.completed} {self.failed}"

    def twin_text(self) -> str:
        """The twin's text: the summary line."""
        return self.summary_text()

    def summary_text(self) -> str:
        """One line: status, completed/failed/total and elapsed time."""
        return (
            f"Batch {self.batch_id[:8]} {self.batch_status}: {self.completed} completed, "
            f"{self.failed} failed of {self.total} ({self.elapsed:.1f} s)"
        )

    def static_html(self) -> str:
        """The current state as self-contained HTML (inline styles, thumbnails as data URIs)."""
        esc = html.escape
        cards = []
        for i, (label, status) in enumerate(zip(self.labels, self.statuses, strict=False)):
            thumb = self._thumbs.get(i)
            picture = (
                f'<img src="data:{thumb[0]};base64,{base64.b64encode(thumb[1]).decode()}" '
                f'style="width:96px;height:96px;object-fit:cover;display:block" '
                f'class="cw-static-image" alt="item {i}"/>'
                if thumb and thumb[2]
                else '<div style="width:96px;height:96px;background:#8884"></div>'
            )
            cards.append(
                f'<div style="display:inline-block;margin:2px;vertical-align:top;width:96px;'
                f'font-size:11px" title="{esc(label)}">{picture}<div>#{i} {esc(status)}</div>'
                '<div style="overflow-wrap:anywhere;color:var(--jp-ui-font-color2,#616161)">'
                f"{'<br>'.join(esc(part) for part in label.split(' · '))}</div></div>"
            )
        return (
            f'<div class="cw-batch-static" data-status="{esc(self.batch_status)}" '
            'style="font-family:var(--jp-ui-font-family,sans-serif)">'
            f"<div><b>{esc(self.summary_text())}</b></div>{''.join(cards)}</div>"
        )

    def close(self) -> None:
        """Stop listening to the batch and close the widget."""
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers = []
        if hasattr(self, "_throttle"):
            self._throttle.close()
            self._previews.close()
        super().close()


def server_columns(batch: Any, jobs: list[Any]) -> dict[str, Any]:
    """The pool's per-server counts and throughput, and each item's server URL ('' unsent)."""
    stats = getattr(batch, "server_stats", None)
    servers = [s.as_dict() for s in stats()] if callable(stats) else []
    item_servers = [str(getattr(getattr(job, "client", None), "url", "") or "") for job in jobs]
    return {"servers": servers, "item_servers": item_servers}


def item_labels(batch: Any) -> list[str]:
    """One label per item from the batch's plan: its varied values and seed ('cfg: 7 · seed: 3')."""
    plan = getattr(batch, "plan", None)
    if plan is None or len(plan) == 0:
        return [f"#{i}" for i in range(int(getattr(batch, "total", 0) or 0))]
    columns = [c for c in plan.columns if c != "batch_index"]
    return [
        " · ".join(gridimage.axis_label(c, plan[c].iat[i]) for c in columns)
        for i in range(len(plan))
    ]


def item_status(job: Any, batch_status: str) -> str:
    """An item's status: its job's state, or 'cancelled' if the batch ended before queuing it."""
    if job is None:
        return "cancelled" if batch_status in FINISHED else "pending"
    return str(getattr(job, "state", "pending"))


def item_progress(job: Any) -> float:
    """An item's progress in percent (100 once completed)."""
    if job is None:
        return 0.0
    if getattr(job, "state", "") == "completed":
        return 100.0
    return round(float(getattr(job, "progress", 0.0) or 0.0), 1)


def first_image_bytes(job: Any) -> bytes | None:
    """The encoded bytes of a job's first image output, or None."""
    for output in getattr(job, "outputs", None) or []:
        if getattr(output, "kind", "") == "image" and getattr(output, "data", None):
            return output.data
    return None


def _index_of(job: Any, position: int) -> int:
    index = getattr(job, "batch_index", None)
    return position if index is None else int(index)
