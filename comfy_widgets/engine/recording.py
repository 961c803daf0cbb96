"""Record jobs off the event loop, many at a time: one write per loop tick, not one per change.

Every Job change the engine records (queued, running, final) used to be a synchronous store
transaction on the loop thread, and a final one wrote its output files there too. A
``RecordWriter`` collects the records of one Recorder on one loop and hands them to a worker
thread in one call (``Recorder.record_generations`` when the recorder has it: one transaction),
one call at a time, in the order they came: what arrives while a write runs goes in the next.
``submit`` returns a future that resolves once the record is written, so a job reports its end
only after its final record is committed.

A final record is written within ``GATHER_S`` (its job is waiting for it), or ``GATHER_MORE_S``
for a batch item with more items to come; a queued or running one within ``LAZY_S``. A write
takes every final record and the records due by then, with the earlier records of their
prompts, and leaves the others' lazy records to wait: at a fast server's pace
a job's queued, running and final records then meet in one write, and only the last is written
(``latest_per_prompt``): one row write per item instead of three. At a slow server's pace every
state is still written, ``LAZY_S`` late at most.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from comfy_widgets.records import GenerationRecord, Recorder
from comfy_widgets.states import TERMINAL_JOB_STATES

log = logging.getLogger(__name__)

# How long a write waits for more records: each hand-over to the worker thread costs a thread
# switch (about a millisecond on a busy machine), so at a fast server's pace one write takes the
# records of a few ticks. A job's end is reported at most this much later.
GATHER_S = 0.01
# How long a batch item's final record may wait while more items are coming: its batch does not
# wait for it (the item's server slot was freed when the server finished), and a write costs
# about as much as the rows of ten items. The batch's last items wait GATHER_S, the very last
# one not at all, and every write takes every final record waiting: the batch ends as soon as
# its last item's record is written.
GATHER_MORE_S = 0.05
# How late a queued or running record may be written (a crash in that window loses only the
# knowledge that the prompt was queued; resuming the batch then queues that item again).
LAZY_S = 0.1

_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, RecordWriter]] = (
    weakref.WeakKeyDictionary()
)


def writer_for(recorder: Recorder, loop: asyncio.AbstractEventLoop) -> RecordWriter:
    """The writer of ``recorder`` on ``loop`` (one per pair, made on first use)."""
    writers = _writers.setdefault(loop, {})
    writer = writers.get(id(recorder))
    if writer is None or writer.recorder is not recorder:
        writer = writers[id(recorder)] = RecordWriter(recorder, loop)
    return writer


def write_records(recorder: Recorder, records: Sequence[GenerationRecord]) -> None:
    """Write ``records`` in order: in one call when the recorder takes many, else one by one."""
    many = getattr(recorder, "record_generations", None)
    if many is not None:
        try:
            many(list(records))
            return
        except Exception:
            log.exception("recording %d generations at once failed; one by one now", len(records))
    for record in records:
        try:
            recorder.record_generation(record)
        except Exception:
            log.exception("recording %s failed for job %s", record.state, record.prompt_id)


def latest_per_prompt(records: list[GenerationRecord]) -> list[GenerationRecord]:
    """The last record of each prompt id, in the order of those last records: a job queued,
    started and finished within one tick is written once, in its final state (each record is
    a full snapshot of the job, so the last one says everything the earlier ones did)."""
    last = {record.prompt_id: n for n, record in enumerate(records)}
    if len(last) == len(records):
        return records
    return [record for n, record in enumerate(records) if last[record.prompt_id] == n]


@dataclass
class _Pending:
    """A record waiting for its write, when it is due and who waits for it."""

    record: GenerationRecord
    done: asyncio.Future[None]
    due: float


class RecordWriter:
    """Batches the records of one Recorder on one loop into a worker thread (module docstring)."""

    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop):
        self.recorder = recorder
        self.loop = loop
        self._pending: list[_Pending] = []
        self._due: float | None = None  # when the earliest pending record must be written
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.writes = 0  # calls made to the recorder (for tests and benchmarks)

    def submit(self, record: GenerationRecord, wait: float | None = None) -> asyncio.Future[None]:
        """Queue ``record`` (on the loop thread); the future resolves once it is written. A
        final record waits ``wait`` seconds at most (default ``GATHER_S``), others ``LAZY_S``."""
        done: asyncio.Future[None] = self.loop.create_future()
        final = record.state in TERMINAL_JOB_STATES
        if not final:
            wait = LAZY_S
        elif wait is None:
            wait = GATHER_S
        due = self.loop.time() + wait
        self._pending.append(_Pending(record, done, due))
        if self._due is None or due < self._due:
            self._due = due
            self._arm()
        return done

    async def flush(self) -> None:
        """Write everything queued so far, now, and wait until it is written."""
        while self._pending or (self._task is not None and not self._task.done()):
            if self._task is None or self._task.done():
                self._start(everything=True)
            assert self._task is not None
            await asyncio.shield(self._task)

    def _arm(self) -> None:
        """Start the next write at ``_due`` (after the running one, which re-arms)."""
        if self._task is not None and not self._task.done():
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(self._due or self.loop.time(), self._start)

    def _start(self, everything: bool = False) -> None:
        """Start a write of the records due now (or of ``everything`` queued)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._take(everything)
        if batch:
            self._task = self.loop.create_task(self._write(batch))
        elif self._pending:
            self._arm()

    def _take(self, everything: bool) -> list[_Pending]:
        """Remove and return what the next write takes: every final record and the records
        due within ``GATHER_S``, with the earlier records of their prompts, in order."""
        if everything:
            batch, self._pending = self._pending, []
        else:
            horizon = self.loop.time() + GATHER_S
            due = {
                p.record.prompt_id
                for p in self._pending
                if p.due <= horizon or p.record.state in TERMINAL_JOB_STATES
            }
            batch = [p for p in self._pending if p.record.prompt_id in due]
            self._pending = [p for p in self._pending if p.record.prompt_id not in due]
        self._due = min((p.due for p in self._pending), default=None)
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        """Write ``batch`` in order, in one call; then arm the next write."""
        records = latest_per_prompt([p.record for p in batch])
        try:
            await self.loop.run_in_executor(None, write_records, self.recorder, records)
        except Exception:  # write_records logs per record; this is the executor failing
            log.exception("recording %d generations failed", len(records))
        self.writes += 1
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(None)
        if self._pending:
            self._task = None
            self._arm()


def record_soon(
    recorder: Recorder, loop: Any, record: GenerationRecord, wait: float | None = None
) -> asyncio.Future[None]:
    """Queue ``record`` on ``recorder``'s writer for ``loop`` (call on the loop thread); a
    final one waits ``wait`` seconds at most (default ``GATHER_S``), others ``LAZY_S``."""
    return writer_for(recorder, loop).submit(record, wait)
