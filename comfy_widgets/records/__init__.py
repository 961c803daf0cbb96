"""The records layer: the ``Recorder`` protocol, its typed records and its implementations.

The engine depends on this package's interface only (``recorder`` and ``open_recorder``),
never on one implementation.
"""

from __future__ import annotations

from typing import Any

from comfy_widgets.records.recorder import (
    BatchRecord,
    GenerationRecord,
    NullRecorder,
    Recorder,
    StoredOutput,
    WorkflowRecord,
    clean_url,
)

__all__ = [
    "BatchRecord",
    "GenerationRecord",
    "NullRecorder",
    "Recorder",
    "StoredOutput",
    "WorkflowRecord",
    "clean_url",
    "open_recorder",
]


def open_recorder(store: Any = "default") -> Recorder:
    """The Recorder for ``connect(store=...)``: ``"default"`` is the SQLite store of the working
    folder, None or False record nothing, a Recorder is used as it is, a path opens that store."""
    if store is None or store is False:
        return NullRecorder()
    if store == "default":
        from comfy_widgets.records.sqlite import Store

        return Store.default()
    if isinstance(store, Recorder):
        return store
    from comfy_widgets.records.sqlite import Store

    return Store(store)
