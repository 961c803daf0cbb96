"""The states of jobs, batches and nodes: one ``str`` Enum per kind.

Each member's value is the string the store writes and the JavaScript front-end compares with
(``js/progress.js``, ``js/batch_view.js``): the widgets send ``state.value``, so the strings on
the wire are unchanged. Being ``str`` subclasses, members compare equal to those strings
(``JobState.COMPLETED == "completed"``), so rows read back from a store compare as they did.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """Where one prompt (a ``Job``, a batch item, a recorded generation) is."""

    PENDING = "pending"  # made, not yet accepted by the server
    QUEUED = "queued"  # the server accepted it; waiting for its turn
    RUNNING = "running"  # the server is executing it
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # deleted from the queue or interrupted
    LOST = "lost"  # recorded as sent, but the server has no trace of it (records only)

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """True for the states a prompt never leaves."""
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}
)


class BatchState(str, Enum):
    """Where a batch is: pending -> running -> one of the four final states."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # every item completed
    PARTIAL = "partial"  # some completed, some did not
    FAILED = "failed"  # none completed
    CANCELLED = "cancelled"  # stopped before every item ran

    def __str__(self) -> str:
        return self.value


class NodeState(str, Enum):
    """Where one node of a running prompt is (the progress widget's timeline)."""

    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"
    DONE = "done"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value
