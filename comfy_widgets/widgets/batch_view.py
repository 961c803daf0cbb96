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
ITEMS_CHUNK = 2000  # items per message when a view (re)opens
THUMBS_CHUNK = 500
STATIC_CARDS = 48  # cards in the static twin; the rest is one line
TWIN_STEPS = 20
# Twin rewrites per second while the batch runs (it is rewritten at once when the batch ends):
# each rewrite sends its HTML, with up to STATIC_CARDS pictures (about 120 kB), to the notebook.
TWIN_RATE = 0.2
SERVERS_INTERVAL_S = 1.0


class BatchView(StaticTwin, anywidget.AnyWidget):
    """Cards with each item's status, progress and thumbnail; a summary; a Stop remaining button.

    Only what changed goes to the browser: the summary as small traits, and the items that
    changed since the last message (``{"type": "items", ...}``), so a message's size follows the
    number of changes, never the batch size. A browser view that (re)opens says ``ready`` and
    gets every item once, in chunks of ``ITEMS_CHUNK``.
    """

    _esm = asset("batch.js")
    _css = asset("batch.css")

    batch_id = traitlets.Unicode("").tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)  # sent once, with the view
    batch_status = traitlets.Unicode("pending").tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    completed = traitlets.Int(0).tag(sync=True)
    failed = traitlets.Int(0).tag(sync=True)
    cancelled = traitlets.Int(0).tag(sync=True)
    running = traitlets.Int(0).tag(sync=True)
    done_percent = traitlets.Float(0.0).tag(sync=True)  # the summary bar, 0..100
    elapsed = traitlets.Float(0.0).tag(sync=True)
    stopping = traitlets.Bool(False).tag(sync=True)
    current = traitlets.Unicode("").tag(sync=True)  # the running items' steps: "#3 step 12/20"
    # a pool: one dict per server (url, protocol, counts, per_minute), refreshed at most once a
    # second (counting them walks the batch); each item's server goes with its item message
    servers = traitlets.List(traitlets.Dict()).tag(sync=True)

    def __init__(self, batch: Any, **kwargs: Any) -> None:
        self.batch = batch
        self._thumbs: dict[int, tuple[str, bytes, bool]] = {}  # index -> (mime, bytes, final)
        self._unreadable: set[int] = set()
        self._unsubscribers: list[Any] = []
        total = int(getattr(batch, "total", 0) or 0)
        self._status = ["pending"] * total
        self._progress = [0.0] * total
        self._errors = [""] * total
        self._servers = [""] * total
        self._running_items: set[int] = set()  # for the summary's "#3 step 12/20"
        self._servers_at = float("-inf")
        self._counts: dict[str, int] = {"pending": total}
        self._done_sum = 0.0
        self._first_queued: float | None = None
        self._last_finished: float | None = None
        self._dirty: set[int] = set()
        self._all_dirty = True
        self._ended = False
        batch_id = str(getattr(batch, "id", ""))
        super().__init__(batch_id=batch_id, labels=item_labels(batch), total=total, **kwargs)
        self.add_class(LIVE_CLASS)
        self._throttle = Throttle(self._apply, MESSAGE_RATE)
        self._previews = Throttle(self._send_previews, PREVIEW_RATE)
        self._twin = Throttle(lambda _: self._refresh_static_output(), TWIN_RATE)
        self.on_msg(self._on_msg)
        self._apply({})
        if hasattr(batch, "subscribe_items"):
            self._unsubscribers.append(batch.subscribe_items(self._on_item))
        else:  # a batch that cannot say which item changed: look at every item
            self._unsubscribers.append(batch.subscribe(self._on_change))

    # --- what the browser sees, as lists (tests and the static twin) -------------------------

    @property
    def statuses(self) -> list[str]:
        """Every item's status, as last sent."""
        return list(self._status)

    @property
    def progress(self) -> list[float]:
        """Every item's progress in percent, as last sent."""
        return list(self._progress)

    @property
    def errors(self) -> list[str]:
        """Every item's error message ('' when none), as last sent."""
        return list(self._errors)

    @property
    def item_servers(self) -> list[str]:
        """Every item's server URL ('' while unsent), as last sent."""
        return list(self._servers)

    # --- batch -> browser ---------------------------------------------------------------------

    def _on_item(self, _batch: Any, index: int | None) -> None:
        """(Loop thread) an item or the batch changed: note it; the throttle sends it.

        Called on every frame of every running item, so it only notes the index: the item's
        job is looked at when the throttle sends (``_update_items``), previews included.
        """
        if index is None:
            self._throttle.push({"update": True})
        elif index not in self._dirty:  # else its send is pending already
            self._dirty.add(index)
            self._throttle.push({"update": True})

    def _on_change(self, *_args: Any) -> None:
        """(Loop thread) something changed, the batch does not say what: every item is dirty."""
        self._all_dirty = True  # previews too: ``_update_items`` looks at every job
        self._throttle.push({"update": True})

    def _push_preview(self, index: int, job: Any) -> None:
        preview = getattr(job, "preview", None)
        known = self._thumbs.get(index)
        if getattr(job, "state", "") == "running" and preview and not (known and known[2]):
            if known is None or known[1] is not preview:
                mime = getattr(job, "preview_mime", None) or "image/jpeg"
                self._previews.push({index: (mime, preview)})

    def _job(self, index: int) -> Any:
        """The Job of item ``index`` (None before it is sent)."""
        job_at = getattr(self.batch, "job", None)
        if callable(job_at):
            return job_at(index)
        return self._jobs().get(index)

    def _jobs(self) -> dict[int, Any]:
        """Item index -> Job for every job created so far (O(batch): used only when needed)."""
        jobs = {}
        for position, job in enumerate(list(getattr(self.batch, "jobs", None) or [])):
            if job is not None:
                jobs[_index_of(job, position)] = job
        return jobs

    def _apply(self, _changes: dict[str, Any]) -> None:
        """Send the summary traits and the items that changed, in one comm message each."""
        status = str(getattr(self.batch, "status", "pending"))
        dirty, self._dirty = self._dirty, set()
        if self._all_dirty:
            self._all_dirty = False
            dirty = set(range(len(self._status)))
        elif status in FINISHED and not self._ended:
            dirty |= {i for i, s in enumerate(self._status) if s == "pending"}  # once, at the end
        self._ended = status in FINISHED
        changed = self._update_items(sorted(dirty), status)
        # the static twin's cards get their pictures now; the browser asks for the others
        # when it shows them (``_on_msg``), so 10,000 items make only the thumbnails looked at
        new_thumbs = self._final_thumbnails([i for i in changed if i < STATIC_CARDS])
        with self.hold_sync():
            self.batch_status = status
            self.completed = self._counts.get("completed", 0)
            self.failed = self._counts.get("failed", 0)
            self.cancelled = self._counts.get("cancelled", 0)
            self.running = self._counts.get("running", 0)
            self.done_percent = round(self._done_sum / len(self._status), 2) if self._status else 0
            self.elapsed = round(self._elapsed(status), 1)
            running = [self._job(i) for i in sorted(self._running_items)]
            self.current = "" if status in FINISHED else current_steps_text(running)
            self._refresh_servers(status)
        if changed:
            self.send(self._items_message(changed))
        if new_thumbs:
            self._send_thumbs(new_thumbs)
        if self._ended:
            self._refresh_static_output()
        else:
            self._twin.push({"twin": True})

    def _refresh_servers(self, status: str) -> None:
        """The pool's per-server lines: at most once a second while running, and at the end."""
        now = time.monotonic()
        if now - self._servers_at < SERVERS_INTERVAL_S and status not in FINISHED:
            return
        self._servers_at = now
        stats = getattr(self.batch, "server_stats", None)
        servers = [s.as_dict() for s in stats()] if callable(stats) else []
        if servers != self.servers:
            self.servers = servers

    def _update_items(self, indexes: list[int], batch_status: str) -> list[int]:
        """Bring these items up to date; the ones whose status, progress or error changed."""
        changed = []
        jobs = self._jobs() if len(indexes) > 64 and not hasattr(self.batch, "job") else None
        for index in indexes:
            if not 0 <= index < len(self._status):
                continue
            job = jobs.get(index) if jobs is not None else self._job(index)
            self._push_preview(index, job)
            new = (
                item_status(job, batch_status),
                item_progress(job),
                str(getattr(job, "error_message", "") or ""),
            )
            self._note_times(job)
            old = (self._status[index], self._progress[index], self._errors[index])
            server = str(getattr(getattr(job, "client", None), "url", "") or "")
            if new == old and server == self._servers[index]:
                continue
            self._servers[index] = server
            self._counts[old[0]] = self._counts.get(old[0], 0) - 1
            self._counts[new[0]] = self._counts.get(new[0], 0) + 1
            self._done_sum += _done_part(*new[:2]) - _done_part(*old[:2])
            self._status[index], self._progress[index], self._errors[index] = new
            if new[0] == "running":
                self._running_items.add(index)
            else:
                self._running_items.discard(index)
            changed.append(index)
        return changed

    def _items_message(self, indexes: list[int]) -> dict[str, Any]:
        return {
            "type": "items",
            "indexes": indexes,
            "statuses": [self._status[i] for i in indexes],
            "progress": [self._progress[i] for i in indexes],
            "errors": [self._errors[i] for i in indexes],
            "servers": [self._servers[i] for i in indexes],
        }

    def _note_times(self, job: Any) -> None:
        timings = getattr(job, "timings", None) or {}
        queued, finished = timings.get("queued_at"), timings.get("finished_at")
        if queued and (self._first_queued is None or queued < self._first_queued):
            self._first_queued = queued
        if finished and (self._last_finished is None or finished > self._last_finished):
            self._last_finished = finished

    def snapshot(self) -> dict[str, Any]:
        """The browser's view of the batch as plain JSON values (no pictures)."""
        return {
            "batch_status": self.batch_status,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "statuses": self.statuses,
            "progress": self.progress,
            "errors": self.errors,
            "elapsed": self.elapsed,
            "current": self.current,
            "servers": self.servers,
            "item_servers": self.item_servers,
        }

    def _elapsed(self, status: str) -> float:
        """Seconds from the first item queued to the last one finished (or to now while running)."""
        if self._first_queued is None:
            return 0.0
        finished = status in FINISHED and self._last_finished is not None
        end = self._last_finished if finished else time.time()
        return max(0.0, (end or 0.0) - self._first_queued)

    def _final_thumbnails(self, indexes: list[int]) -> dict[int, tuple[str, bytes, bool]]:
        """Thumbnails of these items if they just finished (each made once)."""
        new = {}
        for index in indexes:
            known = self._thumbs.get(index)
            if (known and known[2]) or index in self._unreadable:
                continue
            if not 0 <= index < len(self._status) or self._status[index] not in JOB_DONE:
                continue
            data = first_image_bytes(self._job(index))
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
        for start in range(0, len(indexes), THUMBS_CHUNK):
            part = indexes[start : start + THUMBS_CHUNK]
            self.send(
                {
                    "type": "thumbs",
                    "indexes": part,
                    "mimes": [thumbs[i][0] for i in part],
                    "final": [thumbs[i][2] for i in part],
                },
                [thumbs[i][1] for i in part],
            )

    # --- browser -> batch ---------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        kind = content.get("type")
        if kind == "stop":
            self.stop()
        elif kind == "thumbs":  # the browser shows these finished items
            wanted = content.get("indexes")
            indexes = [i for i in wanted if type(i) is int] if isinstance(wanted, list) else []
            pictures = self._final_thumbnails(indexes[:THUMBS_CHUNK])
            if pictures:
                self._send_thumbs(pictures)
        elif kind == "ready":  # a new browser view: every item once, then the pictures
            everything = list(range(len(self._status)))
            for start in range(0, len(everything), ITEMS_CHUNK):
                self.send(self._items_message(everything[start : start + ITEMS_CHUNK]))
            if self._thumbs:
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
        """What rewrites the twin: the status, and the ended counts in 5 % steps (a 10,000-item
        batch rewrites it about 20 times, not once per item)."""
        total = max(1, self.total)
        step = max(1, total // TWIN_STEPS)
        return f"{self.batch_status} {self.completed // step} {self.failed // step}"

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
        """The current state as self-contained HTML (inline styles, thumbnails as data URIs):
        the first ``STATIC_CARDS`` cards and a line counting the others, so it stays small."""
        esc = html.escape
        cards = []
        shown = list(zip(self.labels, self._status, strict=False))[:STATIC_CARDS]
        for i, (label, status) in enumerate(shown):
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
        more = len(self._status) - len(shown)
        rest = (
            f'<div class="cw-batch-static-more">… and {more} more items '
            "(the full results: <code>batch.df</code>, <code>batch.export()</code>)</div>"
            if more > 0
            else ""
        )
        return (
            f'<div class="cw-batch-static" data-status="{esc(self.batch_status)}" '
            'style="font-family:var(--jp-ui-font-family,sans-serif)">'
            f"<div><b>{esc(self.summary_text())}</b></div>{''.join(cards)}{rest}</div>"
        )

    def close(self) -> None:
        """Stop listening to the batch and close the widget."""
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers = []
        if hasattr(self, "_throttle"):
            self._throttle.close()
            self._previews.close()
            self._twin.close()
        super().close()


def _done_part(status: str, progress: float) -> float:
    """What an item adds to the summary bar: failed and cancelled items count as done."""
    return 100.0 if status in ("failed", "cancelled", "lost") else progress


def item_labels(batch: Any) -> list[str]:
    """One label per item from the batch's plan: its varied values and seed ('cfg: 7 · seed: 3')."""
    plan = getattr(batch, "plan", None)
    if plan is None or len(plan) == 0:
        return [f"#{i}" for i in range(int(getattr(batch, "total", 0) or 0))]
    columns = [c for c in plan.columns if c != "batch_index"]
    values = [plan[c].tolist() for c in columns]
    return [
        " · ".join(gridimage.axis_label(c, v[i]) for c, v in zip(columns, values, strict=True))
        for i in range(len(plan))
    ]


def item_status(job: Any, batch_status: str) -> str:
    """An item's status: its job's state, or 'cancelled' if the batch ended before queuing it."""
    if job is None:
        return "cancelled" if batch_status in FINISHED else "pending"
    return str(getattr(job, "state", "pending"))


def current_steps_text(jobs: list[Any]) -> str:
    """The running items and their sampler step, e.g. "#3 step 12/20" ('' when none runs)."""
    parts = []
    for position, job in enumerate(jobs):
        if job is None or getattr(job, "state", "") != "running":
            continue
        steps = getattr(job, "current_steps", None)
        index = _index_of(job, position)
        parts.append(f"#{index} step {steps[0]}/{steps[1]}" if steps else f"#{index} running")
    return ", ".join(parts[:3]) + (f" (+{len(parts) - 3})" if len(parts) > 3 else "")


def item_progress(job: Any) -> float:
    """An item's progress in percent (100 once completed)."""
    if job is None:
        return 0.0
    if getattr(job, "state", "") == "completed":
        return 100.0
    return round(float(getattr(job, "progress", 0.0) or 0.0), 1)


def first_image_bytes(job: Any) -> bytes | None:
    """The encoded bytes of a job's first image output, or None (read once: a finished job's
    outputs hold no bytes, ``data`` reads the store's copy)."""
    for output in getattr(job, "outputs", None) or []:
        if getattr(output, "kind", "") == "image":
            data = getattr(output, "data", None)
            if data:
                return data
    return None


def _index_of(job: Any, position: int) -> int:
    index = getattr(job, "batch_index", None)
    return position if index is None else int(index)
