"""Stand-ins for Job/Batch (the attributes the batch widgets read) shared by their tests."""

from __future__ import annotations

import io
import threading

import pandas as pd
from PIL import Image


def png(rgb=(200, 30, 30), size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, "PNG")
    return buffer.getvalue()


class FakeOutput:
    def __init__(self, data: bytes, kind: str = "image"):
        self.data = data
        self.kind = kind


class FakeJob:
    """The Job attributes BatchView reads, with a way to change them."""

    def __init__(self, index: int, batch: FakeBatch):
        self.batch = batch
        self.batch_index = index
        self.state = "queued"
        self.progress = 0.0
        self.preview: bytes | None = None
        self.preview_mime = "image/jpeg"
        self.outputs: list[FakeOutput] = []
        self.error_message: str | None = None
        self.timings = {"queued_at": 1000.0 + index, "started_at": None, "finished_at": None}

    def update(self, **changes):
        """Change the job; like the real Batch, the batch tells its subscribers."""
        for name, value in changes.items():
            setattr(self, name, value)
        self.batch.notify()


class FakeBatch:
    """The Batch attributes BatchView reads; stop() records the call and the calling thread."""

    def __init__(self, total: int = 3):
        self.id = "batch-1234abcd"
        self.total = total
        cfgs = [5.0 + i for i in range(total)]
        self.plan = pd.DataFrame({"batch_index": range(total), "cfg": cfgs, "seed": range(total)})
        self.jobs: list[FakeJob] = []
        self.status = "pending"
        self.stop_calls: list[str] = []
        self._subscribers = []

    def add_jobs(self, n: int) -> list[FakeJob]:
        start = len(self.jobs)
        self.jobs += [FakeJob(start + i, self) for i in range(n)]
        return self.jobs

    @property
    def completed_count(self):
        return sum(j.state == "completed" for j in self.jobs)

    @property
    def failed_count(self):
        return sum(j.state == "failed" for j in self.jobs)

    def subscribe(self, callback):
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def notify(self):
        for callback in list(self._subscribers):
            callback(self)

    def stop(self, interrupt: bool = False):
        self.stop_calls.append(threading.current_thread().name)
