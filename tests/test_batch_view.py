"""BatchView: per-item status/progress traitlets, thumbnails as messages, Stop remaining."""

from __future__ import annotations

import io
import threading
import time

from PIL import Image

from comfy_widgets.results.gridimage import thumbnail_jpeg
from comfy_widgets.widgets.batch_view import STATIC_CARDS, BatchView, item_labels
from tests._batch_fakes import FakeBatch, FakeOutput, png


def recorder(view: BatchView) -> list:
    sent = []
    view.send = lambda content, buffers=None: sent.append((content, buffers or []))
    return sent


def settle(view: BatchView) -> None:
    """Wait for the throttle's trailing send (it runs on a timer thread outside a loop)."""
    deadline = time.monotonic() + 5
    while (view._throttle.pending or view._previews.pending) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_labels_come_from_the_plan():
    assert item_labels(FakeBatch(2)) == ["cfg: 5 · seed: 0", "cfg: 6 · seed: 1"]


def test_initial_state_is_pending_cards():
    view = BatchView(FakeBatch(3))
    assert view.batch_id == "batch-1234abcd"
    assert view.total == 3 and view.statuses == ["pending"] * 3
    assert view.progress == [0.0] * 3 and view.completed == 0
    assert view.labels[2] == "cfg: 7 · seed: 2"


def test_items_follow_their_jobs():
    batch = FakeBatch(3)
    view = BatchView(batch)
    sent = recorder(view)
    batch.add_jobs(2)
    batch.status = "running"
    batch.notify()
    batch.jobs[0].current_steps = (12, 20)
    batch.jobs[0].update(state="running", progress=40.0, preview=b"jpeg-bytes")
    batch.jobs[1].update(state="failed", error_message="KSampler: out of memory")
    settle(view)
    assert view.current == "#0 step 12/20", "overall items and the current item's steps"
    assert view.statuses == ["running", "failed", "pending"]
    assert view.progress == [40.0, 0.0, 0.0]
    assert view.errors[1] == "KSampler: out of memory"
    assert view.failed == 1 and view.batch_status == "running"
    previews = [(c, b) for c, b in sent if c["type"] == "thumbs"]
    assert previews and previews[-1][0]["final"] == [False]
    assert previews[-1][1] == [b"jpeg-bytes"]


def test_a_finished_item_sends_its_thumbnail_once():
    batch = FakeBatch(2)
    batch.add_jobs(2)
    view = BatchView(batch)
    sent = recorder(view)
    batch.jobs[0].update(state="completed", progress=100.0, outputs=[FakeOutput(png())])
    settle(view)
    batch.jobs[1].update(progress=10.0)
    settle(view)
    thumbs = [(c, b) for c, b in sent if c["type"] == "thumbs"]
    assert len(thumbs) == 1
    content, buffers = thumbs[0]
    assert content == {"type": "thumbs", "indexes": [0], "mimes": ["image/jpeg"], "final": [True]}
    thumb = Image.open(io.BytesIO(buffers[0]))
    assert thumb.format == "JPEG" and thumb.size == (64, 64)
    assert view.statuses[0] == "completed" and view.progress[0] == 100.0


def test_later_items_get_their_thumbnail_when_the_browser_asks():
    total = STATIC_CARDS + 12
    batch = FakeBatch(total)
    batch.add_jobs(total)
    view = BatchView(batch)
    sent = recorder(view)
    for job in batch.jobs:
        job.update(state="completed", progress=100.0, outputs=[FakeOutput(png())])
    settle(view)
    made = sorted(i for c, _ in sent if c["type"] == "thumbs" for i in c["indexes"])
    assert made == list(range(STATIC_CARDS))  # the static twin's cards, nothing more
    sent.clear()
    later = STATIC_CARDS + 5
    view._on_msg(view, {"type": "thumbs", "indexes": [later, "x", True, 10**9]}, [])
    assert [(c["indexes"], c["final"]) for c, _ in sent] == [([later], [True])]
    assert Image.open(io.BytesIO(sent[0][1][0])).format == "JPEG"


def test_a_new_browser_view_gets_the_known_thumbnails():
    batch = FakeBatch(1)
    batch.add_jobs(1)
    batch.jobs[0].state = "completed"
    batch.jobs[0].outputs = [FakeOutput(png())]
    view = BatchView(batch)
    sent = recorder(view)
    view._on_msg(view, {"type": "ready"}, [])
    assert sent[-1][0]["indexes"] == [0] and len(sent[-1][1]) == 1


def test_stop_button_calls_batch_stop_from_a_callback_thread():
    batch = FakeBatch(2)
    view = BatchView(batch)
    worker = threading.Thread(
        target=view._on_msg, args=(view, {"type": "stop"}, []), name="subshell-test"
    )
    worker.start()
    worker.join()
    assert batch.stop_calls == ["subshell-test"]
    assert view.stopping


def test_unqueued_items_show_cancelled_after_the_batch_ends():
    batch = FakeBatch(3)
    batch.add_jobs(1)
    batch.jobs[0].state = "completed"
    batch.jobs[0].timings.update(started_at=1001.0, finished_at=1004.5)
    batch.status = "cancelled"
    view = BatchView(batch)
    assert view.statuses == ["completed", "cancelled", "cancelled"]
    assert view.elapsed == 4.5
    assert view.completed == 1


def test_rapid_changes_are_coalesced_and_the_last_one_arrives():
    batch = FakeBatch(1)
    batch.add_jobs(1)
    view = BatchView(batch)
    for step in range(1, 201):
        batch.jobs[0].update(state="running", progress=step / 2)
    settle(view)
    assert view._throttle.sends < 200
    assert view.progress == [100.0]


def test_static_fallback_summarises_the_batch():
    batch = FakeBatch(2)
    batch.add_jobs(2)
    batch.jobs[0].update(state="completed", outputs=[FakeOutput(png())])
    batch.status = "partial"
    batch.jobs[1].update(state="failed", error_message="boom")
    view = BatchView(batch)
    data, _ = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("Batch batch-12 partial: 1 completed, 1 failed of 2")
    assert data["text/html"].count("data:image/jpeg;base64,") == 1
    assert "#1 failed" in data["text/html"]


def test_close_unsubscribes_from_the_batch():
    batch = FakeBatch(1)
    view = BatchView(batch)
    assert batch._subscribers
    view.close()
    assert not batch._subscribers


def test_thumbnail_of_a_transparent_palette_image():
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 150), (0, 0, 0, 0)).convert("P").save(buffer, "PNG")
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(buffer.getvalue(), 128)))
    assert thumb.size == (128, 64)


def test_an_unreadable_image_leaves_the_card_without_a_picture():
    batch = FakeBatch(2)
    batch.add_jobs(2)
    view = BatchView(batch)
    sent = recorder(view)
    batch.jobs[0].update(state="completed", outputs=[FakeOutput(b"not an image")])
    batch.jobs[1].update(state="completed", outputs=[FakeOutput(png())])
    settle(view)
    thumbs = [c for c, _ in sent if c["type"] == "thumbs"]
    assert [c["indexes"] for c in thumbs] == [[1]]
    assert view.statuses == ["completed", "completed"]


class ItemBatch(FakeBatch):
    """A FakeBatch that, like Batch, says which item changed and looks a job up by index."""

    def __init__(self, total: int):
        super().__init__(total)
        self._item_subscribers = []

    def job(self, index):
        return self.jobs[index] if index < len(self.jobs) else None

    def subscribe_items(self, callback):
        self._item_subscribers.append(callback)
        return lambda: self._item_subscribers.remove(callback)

    def notify(self, index=None):
        super().notify()
        for callback in list(self._item_subscribers):
            callback(self, index)


def test_frames_of_a_noted_item_cost_no_job_lookup_and_previews_still_go_out():
    batch = ItemBatch(3)
    batch.add_jobs(3)
    looked_up: list[int] = []
    job_at = batch.job
    batch.job = lambda index: looked_up.append(index) or job_at(index)
    view = BatchView(batch)
    sent = recorder(view)
    settle(view)
    looked_up.clear()
    time.sleep(0.06)  # past the throttle interval: the first change goes at once
    running = batch.jobs[1]
    running.update(state="running", progress=5.0)
    for step in range(2, 40):  # a sampler's frames: the item is noted once, sent once more
        running.state, running.progress = "running", float(step)
        batch.notify(1)
    running.preview = b"jpeg-preview"
    batch.notify(1)
    settle(view)
    assert len(looked_up) <= 3, looked_up  # per send, not per frame
    assert view.progress[1] == 39.0 and view.statuses[1] == "running"
    previews = [(c, b) for c, b in sent if c["type"] == "thumbs"]
    assert previews and previews[-1][1] == [b"jpeg-preview"]
    assert previews[-1][0]["indexes"] == [1] and previews[-1][0]["final"] == [False]


def _one_change_costs(total: int) -> tuple[int, int]:
    """Bytes of the comm messages one item's change sends, and of the summary state."""
    import json

    batch = ItemBatch(total)
    view = BatchView(batch)
    sent = recorder(view)
    states = []
    view.send_state = lambda key=None: states.append(view.get_state(key))
    batch.add_jobs(total)
    settle(view)
    sent.clear()
    states.clear()
    time.sleep(0.06)  # past the throttle interval: the next change goes at once
    batch.jobs[total // 2].state = "running"
    batch.jobs[total // 2].progress = 30.0
    batch.notify(total // 2)
    settle(view)
    items = [c for c, _ in sent if c["type"] == "items"]
    assert items and items[-1]["indexes"] == [total // 2]
    assert view.statuses[total // 2] == "running" and view.running == 1
    return sum(len(json.dumps(c)) for c, _ in sent), sum(
        len(json.dumps(s, default=str)) for s in states
    )


def test_state_messages_do_not_grow_with_the_batch():
    small, large = _one_change_costs(10), _one_change_costs(2000)
    assert large[0] <= small[0] + 16  # only the index's digits differ
    assert large[1] <= small[1] + 64


def test_static_twin_stays_small_for_a_large_batch():
    batch = ItemBatch(5000)
    view = BatchView(batch)
    page = view.static_html()
    assert page.count("font-size:11px") == 48 and "4952 more items" in page
    assert len(page) < 40_000


def test_a_displayed_view_rewrites_its_twin_now_and_then_and_at_the_end(monkeypatch):
    updates: list[dict] = []

    class Handle:
        def update(self, data, **_):
            updates.append(data)

    def display(data, display_id=None, **_):
        return Handle() if display_id else None

    monkeypatch.setattr("IPython.display.display", display)
    total = 40  # a twin step per item: without the rate, every message would rewrite it
    batch = FakeBatch(total)
    batch.add_jobs(total)
    batch.status = "running"
    view = BatchView(batch)
    view._ipython_display_()
    for job in batch.jobs[:-1]:
        job.update(state="completed", progress=100.0, outputs=[FakeOutput(png())])
        time.sleep(0.005)
    settle(view)
    assert updates == [] and view._twin.pending  # displayed just now: the next one waits
    batch.status = "completed"
    batch.jobs[-1].update(state="completed", progress=100.0, outputs=[FakeOutput(png())])
    settle(view)
    assert len(updates) == 1  # the end is written at once
    assert f"completed: {total} completed" in updates[-1]["text/plain"]
    assert updates[-1]["text/html"].count("data:image/jpeg;base64,") == total
    view.close()
