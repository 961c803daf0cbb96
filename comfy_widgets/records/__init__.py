"""The records layer: the ``Recorder`` protocol, its typed records and its implementations.

The engine depends on this package's interface only (``recorder`` and ``open_recorder``),
never on one implementation.
"""

from __future__ import annotations

import os
from typing import Any

from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.records.recorder import (
    BatchRecord,
    GenerationRecord,
    NullRecorder,
    Recorder,
    StoredOutput,
    WorkflowRecord,
    clean_url,
)

STORE_ENV = "COMFY_WIDGETS_STORE"

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
    """The Recorder for ``connect(store=...)``.

    ``"default"`` is ``$COMFY_WIDGETS_STORE`` when it is a ``postgresql://`` URL (a team's
    shared store), otherwise the SQLite store of the working folder. None or False record
    nothing, a Recorder is used as it is, a ``postgresql://`` URL opens that database (one
    connection per URL and process), any other string or path opens that SQLite store.
    """
    if store is None or store is False:
        return NullRecorder()
    if isinstance(store, Recorder):
        return store
    from comfy_widgets.records.postgres import PostgresStore, is_postgres_url
    from comfy_widgets.records.sqlite import Store

    if store == "default":
        configured = os.environ.get(STORE_ENV, "").strip()
        if configured.lower() in ("", "sqlite"):
            return Store.default()
        if not is_postgres_url(configured):
            raise ComfyWidgetsError(
                f"{STORE_ENV} must be a postgresql:// URL or 'sqlite' "
                "(set COMFY_WIDGETS_HOME to move the SQLite store)"
            )
        store = configured
    if is_postgres_url(store):
        return PostgresStore.shared(store)
    return Store(store)
