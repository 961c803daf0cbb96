"""Reading the run store back: ``cw.history`` and ``cw.load_batch``, as results DataFrames.

(Not named ``history``: a module of that name shadowed the function ``cw.history``.)

"""

from __future__ import annotations

from typing import Any

import pandas as pd

from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.records import BatchRecord, GenerationRecord, Recorder, StoredOutput
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.frame import TAIL_COLUMNS, OutputRef, build_frame, columns_for, empty_row

SEED_FIELDS = ("seed", "noise_seed")
HISTORY_HEAD = [
    "generation_id",
    "prompt_id",
    "workflow",
    "batch_id",
    "batch_index",
    "server",
    "status",
    "parameters",
    "seed",
]


def history(
    workflow: Any = None,
    batch_id: str | None = None,
    status: str | list[str] | None = None,
    since: Any = None,
    store: Recorder | None = None,
) -> pd.DataFrame:
    """Every recorded generation matching the filters, one row each, in the order recorded.

    ``workflow`` is a name, a content hash, a workflow id or a Workflow; ``since`` a unix time,
    datetime or date string; ``status`` one status or a list. Timestamps are UTC; image cells
    are OutputRefs, so the frame displays with thumbnails.
    """
    recorder = store or Store.default()
    records = recorder.find_generations(
        workflow=workflow, batch_id=batch_id, status=status, since=since
    )
    rows = [_history_row(r) for r in records]
    return build_frame(rows, [*HISTORY_HEAD, *TAIL_COLUMNS, "error_node", "prompt"])


def load_batch(batch_id: str, store: Recorder | None = None) -> pd.DataFrame:
    """A recorded batch as its results DataFrame (the columns of ``await batch``).

    Items that were planned but never sent appear as ``pending`` (``cancelled`` once the batch
    ended), so the frame always has one row per planned item, ready for ``ResultGrid``.
    """
    recorder = store or Store.default()
    record = recorder.batch(batch_id)
    if record is None:
        raise ComfyWidgetsError(f"no batch {batch_id!r} in {recorder!r}")
    records = {
        r.batch_index: r
        for r in recorder.find_generations(batch_id=batch_id)
        if r.batch_index is not None
    }
    plan = record.plan
    total = max(record.total_count, len(plan), max(records, default=-1) + 1)
    varied = _varied_columns(record)
    unsent = "pending" if record.state in ("pending", "running") else "cancelled"
    rows: list[dict[str, Any]] = []
    for index in range(total):
        gen = records.get(index)
        values = gen.parameters if gen else (plan[index] if index < len(plan) else {})
        row: dict[str, Any] = {"batch_id": batch_id, "batch_index": index}
        row.update({name: values.get(name) for name in varied})
        row["seed"] = seed_of(values)
        row.update(_generation_columns(gen) if gen else empty_row(unsent))
        rows.append(row)
    return build_frame(rows, columns_for(varied))


def output_refs(outputs: list[StoredOutput], server: str | None) -> list[OutputRef]:
    """OutputRefs for stored outputs (the store's local copy is used first)."""
    return [OutputRef.from_record(o.as_dict(), server=server) for o in outputs]


def _history_row(record: GenerationRecord) -> dict[str, Any]:
    """One ``history()`` row from a stored generation."""
    return {
        "generation_id": record.id,
        "workflow": record.workflow.name if record.workflow is not None else None,
        "batch_id": record.batch_id,
        "batch_index": record.batch_index,
        "parameters": record.parameters,
        "seed": seed_of(record.parameters),
        **_generation_columns(record),
        "error_node": record.error_node,
        "prompt": record.prompt,
    }


def _generation_columns(record: GenerationRecord) -> dict[str, Any]:
    """The prompt id, server, status, outputs, timing and error columns of a stored generation."""
    refs = output_refs(record.saved_outputs, record.server)
    images = [ref for ref in refs if ref.kind == "image"]
    started, finished = record.started_at, record.finished_at
    return {
        "prompt_id": record.prompt_id,
        "server": record.server,
        "status": record.state.value,
        "image": images[0] if images else None,
        "outputs": refs,
        "queued_at": _utc(record.queued_at),
        "started_at": _utc(started),
        "finished_at": _utc(finished),
        "duration_s": (finished - started)
        if started is not None and finished is not None
        else None,
        "error": record.error,
    }


def _utc(value: float | None) -> pd.Timestamp | None:
    """A stored unix time as a UTC Timestamp (the results DataFrame's time type)."""
    return None if value is None else pd.Timestamp(value, unit="s", tz="UTC")


def _varied_columns(record: BatchRecord) -> list[str]:
    """The varied-parameter columns of a batch: as recorded, else the plan keys that change."""
    columns = record.columns
    if columns is None:
        plan = record.plan
        keys = list(dict.fromkeys(k for row in plan for k in row))
        columns = [k for k in keys if len({repr(row.get(k)) for row in plan}) > 1]
    return [c for c in columns if c != "seed" and c.rsplit(".", 1)[-1] not in SEED_FIELDS]


def seed_of(values: dict[str, Any]) -> Any:
    """The seed among parameter values: ``seed``, else the first ``*.seed``/``noise_seed`` key."""
    if "seed" in values:
        return values["seed"]
    for name, value in values.items():
        if name.rsplit(".", 1)[-1] in SEED_FIELDS:
            return value
    return None
