"""The run store's cost per generation, PostgreSQL (a team store) next to SQLite (the default).

Both stores record the same batch in the same run: every item queued, running, then completed with
one small PNG (what a Job writes), then the batch is read back (``find_generations`` and
``load_batch``). "caller" is the time the recording thread (the kernel's event loop) spends,
"written" the time until every record is in the database. PostgreSQL is a throwaway local
server (tests/pg_server.py, fsync off), so this measures the client side and the SQL, not a
disk or a network: over a network each recorded state costs about 15 round trips more.

    .venv/bin/python benchmarks/store.py [--items 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfy_widgets.records import BatchRecord, GenerationRecord, WorkflowRecord  # noqa: E402
from comfy_widgets.records.postgres import PostgresStore  # noqa: E402
from comfy_widgets.records.sqlite import Store  # noqa: E402
from comfy_widgets.results.recorded import load_batch  # noqa: E402
from comfy_widgets.states import JobState  # noqa: E402
from comfy_widgets.transport.outputs import Output  # noqa: E402
from tests.pg_server import TempPostgres  # noqa: E402
from tests.store_fakes import API_PROMPT, png_bytes  # noqa: E402


def record_batch(store: Any, items: int) -> dict[str, float]:
    """Record one batch item by item as a Job would; return ms per item and per read."""
    wf = WorkflowRecord("bench", API_PROMPT, "api")
    store.record_batch(BatchRecord("bench", wf, items, plan=[{"seed": i} for i in range(items)]))
    png = png_bytes()
    start = time.perf_counter()
    for i in range(items):
        gen = GenerationRecord(str(uuid.uuid4()), JobState.QUEUED, "http://127.0.0.1:8188", wf,
                               {"seed": i}, API_PROMPT, batch_id="bench", batch_index=i,
                               queued_at=time.time())  # fmt: skip
        store.record_generation(gen)
        gen.state = JobState.RUNNING
        store.record_generation(gen)
        gen.state = JobState.COMPLETED
        gen.outputs = [Output("9", "a.png", "", "output", "image", "image/png", png)]
        store.record_generation(gen)
    returned = time.perf_counter()
    getattr(store, "flush", lambda: None)()  # PostgreSQL writes on its own thread
    written = time.perf_counter()
    assert len(store.find_generations(batch_id="bench")) == items
    found = time.perf_counter()
    assert len(load_batch("bench", store)) == items
    loaded = time.perf_counter()
    return {
        "caller ms/item": 1000 * (returned - start) / items,
        "written ms/item": 1000 * (written - start) / items,
        "find_generations ms": 1000 * (found - written),
        "load_batch ms": 1000 * (loaded - found),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, TempPostgres() as server:
        sqlite = Store(Path(tmp) / "sqlite" / "store.sqlite")
        postgres = PostgresStore(server.url(), outputs_dir=Path(tmp) / "pg" / "outputs")
        results = {"SQLite": record_batch(sqlite, args.items)}
        results["PostgreSQL"] = record_batch(postgres, args.items)
        sqlite.close()
        postgres.close()
    print(f"{args.items} items, queued + running + completed with one PNG each")
    for metric in results["SQLite"]:
        lite, pg = results["SQLite"][metric], results["PostgreSQL"][metric]
        print(f"  {metric:22s} SQLite {lite:8.2f}  PostgreSQL {pg:8.2f}  ratio {pg / lite:5.2f}")


if __name__ == "__main__":
    main()
