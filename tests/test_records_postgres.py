"""What only the PostgreSQL store has: its schema and migrations, writers in several processes,
credentials kept out of everything, reconnecting, and outputs read from another machine."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.records import BatchRecord, GenerationRecord, WorkflowRecord, pg_schema
from comfy_widgets.records.postgres import PostgresStore, StoreError, is_postgres_url
from comfy_widgets.states import BatchState, JobState
from comfy_widgets.transport.outputs import Output
from tests.store_fakes import API_PROMPT, png_bytes
from tests.test_resume_crash import sim_process  # noqa: F401  (the simulator in its own process)

REPO = Path(__file__).resolve().parents[1]
JOBS_PER_WRITER = 60
TABLES = {"comfyui_workflows", "comfyui_generations", "comfyui_batches", "comfyui_schema_version"}


@pytest.fixture
def store(postgres_url, tmp_path):
    store = PostgresStore(postgres_url, outputs_dir=tmp_path / "outputs")
    yield store
    store.close()


def _raw(url: str) -> psycopg.Connection:
    """A plain autocommit connection to the test's schema (to look at or change tables)."""
    return psycopg.connect(url, autocommit=True)


def _finished(prompt_id: str | None = None, **fields) -> GenerationRecord:
    fields.setdefault("parameters", {"seed": 1})
    gen = GenerationRecord(prompt_id or str(uuid.uuid4()), JobState.COMPLETED, **fields)
    gen.outputs = [Output("9", "a.png", "", "output", "image", "image/png", png_bytes())]
    return gen


# --- schema and migrations --------------------------------------------------------------------


def test_schema_has_the_plans_tables_and_jsonb_columns(store, postgres_url):
    with _raw(postgres_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        types = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            ).fetchall()
        )
        versions = [r[0] for r in conn.execute("SELECT version FROM comfyui_schema_version")]
    assert TABLES <= tables
    assert types["comfyui_workflows.default_parameters"] == "jsonb"
    assert types["comfyui_generations.parameters_used"] == "jsonb"
    assert types["comfyui_generations.prompt"] == "json"  # the exact text sent
    for column in ("batch_id", "batch_index"):
        assert f"comfyui_generations.{column}" in types
    for column in ("total_count", "completed_count", "failed_count", "status"):
        assert f"comfyui_batches.{column}" in types
    assert versions == [n for n, _ in pg_schema.MIGRATIONS]
    assert store.schema_version == pg_schema.LATEST


def test_newer_schema_with_unknown_columns_and_tables_still_opens(postgres_url, tmp_path):
    PostgresStore(postgres_url).close()
    with _raw(postgres_url) as conn:
        conn.execute("ALTER TABLE comfyui_generations ADD COLUMN future_col TEXT DEFAULT 'x'")
        conn.execute("ALTER TABLE comfyui_workflows ADD COLUMN tags TEXT[] NOT NULL DEFAULT '{}'")
        conn.execute("CREATE TABLE comfyui_future (id SERIAL PRIMARY KEY)")
        conn.execute(
            "INSERT INTO comfyui_schema_version (version) VALUES (%s)", (pg_schema.LATEST + 5,)
        )
    store = PostgresStore(postgres_url, outputs_dir=tmp_path)
    assert store.schema_version == pg_schema.LATEST + 5
    wf = WorkflowRecord("w", API_PROMPT, "api")
    store.record_generation(_finished(workflow=wf, batch_id="b", batch_index=0))
    store.set_last_used(wf, {"seed": 2})
    [row] = store.find_generations(workflow="w")
    assert row.state == JobState.COMPLETED and store.last_used(wf) == {"seed": 2}
    assert store.batch("b").completed_count == 1
    assert store.query("SELECT future_col FROM comfyui_generations")[0]["future_col"] == "x"


def test_older_store_is_migrated_forward_once(postgres_url, monkeypatch):
    PostgresStore(postgres_url).close()
    extra = (pg_schema.LATEST + 1, ["ALTER TABLE comfyui_batches ADD COLUMN note TEXT"])
    monkeypatch.setattr(pg_schema, "MIGRATIONS", [*pg_schema.MIGRATIONS, extra])
    store = PostgresStore(postgres_url)
    assert store.schema_version == extra[0]
    assert store.query("SELECT note FROM comfyui_batches") == []
    assert PostgresStore(postgres_url).schema_version == extra[0]  # not applied twice


def test_failed_migration_rolls_back(postgres_url, monkeypatch):
    PostgresStore(postgres_url).close()
    bad = (pg_schema.LATEST + 1, ["CREATE TABLE comfyui_t2 (a INTEGER)", "THIS IS NOT SQL"])
    monkeypatch.setattr(pg_schema, "MIGRATIONS", [*pg_schema.MIGRATIONS, bad])
    with pytest.raises(psycopg.errors.SyntaxError):
        PostgresStore(postgres_url)
    with _raw(postgres_url) as conn:
        assert conn.execute("SELECT MAX(version) FROM comfyui_schema_version").fetchone()[0] == (
            pg_schema.LATEST
        )
        assert conn.execute("SELECT to_regclass('comfyui_t2')").fetchone()[0] is None


def test_a_role_without_create_rights_opens_an_up_to_date_store(postgres_server, postgres_url):
    writer = PostgresStore(postgres_url)
    writer.record_generation(_finished())
    writer.close()
    schema = postgres_url.rsplit("%3D", 1)[1]
    with postgres_server.admin("comfy_widgets") as conn:
        conn.execute("DROP ROLE IF EXISTS cw_reader")
        conn.execute("CREATE ROLE cw_reader LOGIN PASSWORD 'reader-pw'")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO cw_reader")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO cw_reader")
    reader_url = postgres_url.replace(f"cw_test:{postgres_server.password}", "cw_reader:reader-pw")
    reader = PostgresStore(reader_url)
    try:
        assert reader.schema_version == pg_schema.LATEST
        assert len(reader.find_generations()) == 1
    finally:
        reader.close()
        with postgres_server.admin("comfy_widgets") as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM cw_reader")
            conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM cw_reader")
            conn.execute("DROP ROLE cw_reader")


# --- several writers --------------------------------------------------------------------------

WRITER = """
import sys
from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.records import BatchRecord, GenerationRecord, WorkflowRecord
from comfy_widgets.records.postgres import PostgresStore
from comfy_widgets.states import JobState
from comfy_widgets.transport.outputs import Output
from tests.store_fakes import API_PROMPT, png_bytes
from tests.test_resume_crash import sim_process  # noqa: F401  (the simulator in its own process)

url, tag, count, outputs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = PostgresStore(url, outputs_dir=outputs)
wf = WorkflowRecord("shared", API_PROMPT, "api")
store.record_batch(BatchRecord("shared-batch", wf, 2 * count))
print("ready", flush=True)
sys.stdin.readline()
offset = 0 if tag == "a" else count
for i in range(count):
    gen = GenerationRecord(f"{tag}-{i}", JobState.QUEUED, "http://127.0.0.1:1", wf,
                           {"seed": i, "writer": tag}, API_PROMPT, batch_id="shared-batch",
                           batch_index=offset + i, queued_at=1000.0 + i)
    store.record_generation(gen)
    gen.state = JobState.RUNNING
    store.record_generation(gen)
    gen.state = JobState.FAILED if i % 10 == 9 else JobState.COMPLETED
    gen.outputs = [Output("9", "x.png", "", "output", "image", "image/png", png_bytes())]
    store.record_generation(gen)
    store.set_last_used(wf, {"seed": i, "writer": tag})
print("done", flush=True)
"""


def _start_writer(url: str, tag: str, outputs: Path) -> subprocess.Popen:
    """A writer process (own interpreter, own connection) that waits for a line to start."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, tag, str(JOBS_PER_WRITER), str(outputs)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_write_one_batch_without_losing_anything(postgres_url, tmp_path):
    writers = [_start_writer(postgres_url, tag, tmp_path / tag) for tag in "ab"]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in writers:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0 and out.strip() == "done"
    store = PostgresStore(postgres_url, outputs_dir=tmp_path / "reader")
    rows = store.find_generations(batch_id="shared-batch")
    assert sorted(r.batch_index for r in rows) == list(range(2 * JOBS_PER_WRITER))
    assert len({r.prompt_id for r in rows}) == 2 * JOBS_PER_WRITER
    failed = [r for r in rows if r.state == JobState.FAILED]
    assert len(failed) == 2 * JOBS_PER_WRITER // 10
    assert all(len(r.saved_outputs) == 1 for r in rows)
    assert all(Path(r.saved_outputs[0].local_path).is_file() for r in rows)
    record = store.batch("shared-batch")
    expected = (2 * JOBS_PER_WRITER - len(failed), len(failed))
    assert (record.completed_count, record.failed_count) == expected
    assert len(store.query("SELECT id FROM comfyui_workflows")) == 1
    assert store.last_used(WorkflowRecord("shared", API_PROMPT, "api"))["seed"] == (
        JOBS_PER_WRITER - 1
    )
    store.close()


def test_a_batch_recount_waits_for_and_sees_another_writers_item(store, postgres_url):
    """Another kernel holds the batch row while it adds a finished item: our write returns at
    once (the writer thread waits, not the caller), waits for that commit, and its recount
    includes the other item (counts read before it would lose it)."""
    store.record_batch(BatchRecord("b", None, 2))
    store.record_generation(GenerationRecord("ours", JobState.QUEUED, batch_id="b", batch_index=0))
    store.flush()
    other = _raw(postgres_url)
    other.autocommit = False
    other.execute("SELECT 1 FROM comfyui_batches WHERE id = 'b' FOR UPDATE")
    other.execute(
        "INSERT INTO comfyui_generations (prompt_id, status, batch_id, batch_index)"
        " VALUES ('theirs', 'completed', 'b', 1)"
    )
    store.record_generation(_finished("ours", batch_id="b", batch_index=0))  # does not block
    _wait_until_blocked_on_a_lock(postgres_url)
    status = other.execute("SELECT status FROM comfyui_generations WHERE prompt_id = 'ours'")
    assert status.fetchone()[0] == "queued"  # its writer waits for our lock
    other.commit()
    other.close()
    record = store.batch("b")  # reads wait for this process's queued writes
    assert (record.completed_count, record.failed_count) == (2, 0)


def _wait_until_blocked_on_a_lock(url: str, timeout: float = 30) -> None:
    """Wait until the store's connection waits for a lock another connection holds."""
    deadline = time.monotonic() + timeout
    with _raw(url) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'comfy_widgets' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the store's write never waited for the other writer's lock")


def test_writes_wait_for_a_database_that_is_down(store, postgres_server):
    store.record_generation(_finished("one"))
    store.flush()
    postgres_server.pause()
    try:
        store.record_generation(_finished("two"))  # returns although nothing can be written
        store.set_last_used(WorkflowRecord("w", API_PROMPT, "api"), {"seed": 9})
    finally:
        postgres_server.unpause()
    assert [r.prompt_id for r in store.find_generations()] == ["one", "two"]
    assert store.last_used(WorkflowRecord("w", API_PROMPT, "api")) == {"seed": 9}


def test_two_processes_open_a_new_database_and_migrate_it_once(postgres_url):
    code = "import sys; from comfy_widgets.records.postgres import PostgresStore as S; " + (
        "print(S(sys.argv[1]).schema_version)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_url], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outs == [str(pg_schema.LATEST)] * 3
    with _raw(postgres_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM comfyui_schema_version")]
    assert versions == [n for n, _ in pg_schema.MIGRATIONS]


# --- credentials ------------------------------------------------------------------------------


def test_credentials_never_reach_the_database_logs_or_messages(
    postgres_server, postgres_url, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    password = postgres_server.password
    secrets = [password, "srv-SECRET-19ab", "tok-SECRET-42cd"]
    server = f"http://bob:{secrets[1]}@127.0.0.1:8188/?token={secrets[2]}"
    store = PostgresStore(postgres_url, outputs_dir=tmp_path / "outputs")
    wf = WorkflowRecord("w", API_PROMPT, "api")
    store.record_batch(BatchRecord("b", wf, 2, servers=[server, postgres_url]))
    gen = _finished(server=server, workflow=wf, batch_id="b", batch_index=0)
    store.record_generation(gen)
    store.record_generation(
        GenerationRecord("lost-1", JobState.LOST, server, batch_id="b", batch_index=1)
    )
    store.set_last_used(wf, {"seed": 1})
    store.set_batch_state("b", BatchState.PARTIAL)
    shown = [repr(store), str(store), store.url, repr(store.batch("b")), caplog.text]
    shown += [repr(r) for r in store.find_generations()]
    with pytest.raises(StoreError) as wrong:
        wrong_password = password[:-1] + ("y" if password.endswith("x") else "x")  # never equal
        PostgresStore(postgres_url.replace(password, wrong_password))
    with pytest.raises(StoreError) as malformed:
        PostgresStore(f"postgresql://u:{password}@127.0.0.1:notaport/db")
    shown += [str(wrong.value), repr(wrong.value), str(malformed.value)]
    assert "password authentication failed" in str(wrong.value)
    assert wrong.value.__cause__ is None and wrong.value.__suppress_context__
    for text in shown:
        assert all(s not in text for s in secrets), text
    assert store.url == f"postgresql://cw_test@127.0.0.1:{postgres_server.port}/comfy_widgets"
    store.close()
    found = _grep_database(postgres_server, secrets)
    assert found == [], f"credentials stored in {found}"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not [p for p in files if any(s.encode() in p.read_bytes() for s in secrets)]


def test_a_run_and_a_resume_with_credentials_leave_none_in_the_database(
    postgres_server, postgres_url, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    secrets = [postgres_server.password, "tok-SECRET-7f3a", "pw-SECRET-91bc", "hdr-SECRET-22de"]
    store = PostgresStore(postgres_url, outputs_dir=tmp_path / "outputs")
    prompt = json.loads((REPO / "comfy_widgets" / "examples" / "empty_image_api.json").read_text())
    prompt["1"]["inputs"].update(width=16, height=16)
    with sim.serve() as server:
        host = server.url.split("://", 1)[1]
        client = connect(
            f"http://alice:{secrets[2]}@{host}/?token={secrets[1]}",
            token=secrets[1],
            headers={"X-Api-Key": secrets[3]},
            store=store,
        )
        try:
            client.submit(prompt, parameters={"width": 16}).result(timeout=30)
            second = json.loads(json.dumps(prompt))
            second["1"]["inputs"]["color"] = 5
            servers = [f"http://bob:{secrets[2]}@{host}/?key={secrets[1]}"]
            store.record_batch(BatchRecord("sb", None, 1, prompts=[second], servers=servers))
            df = resume("sb", client, store=store, poll_interval=0.01)
            assert list(df["status"]) == ["completed"]
        finally:
            client.close()
    rows = store.find_generations()
    assert len(rows) == 2 and {r.server for r in rows} == {server.url}
    store.close()
    assert _grep_database(postgres_server, secrets) == []
    assert not [s for s in secrets if s in caplog.text]
    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert len(files) == 2
    assert not [p for p in files if any(s.encode() in p.read_bytes() for s in secrets)]


def _grep_database(postgres_server, secrets: list[str]) -> list[str]:
    """Every text-like column of every table in the test database that holds a secret."""
    hits = []
    with postgres_server.admin("comfy_widgets") as conn:
        columns = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND data_type IN ('text', 'json', 'jsonb', 'character varying', 'ARRAY')"
        ).fetchall()
        for schema, table, column in columns:
            for secret in secrets:
                query = psycopg.sql.SQL("SELECT count(*) FROM {}.{} WHERE {}::text LIKE %s").format(
                    psycopg.sql.Identifier(schema),
                    psycopg.sql.Identifier(table),
                    psycopg.sql.Identifier(column),
                )
                if conn.execute(query, (f"%{secret}%",)).fetchone()[0]:
                    hits.append(f"{schema}.{table}.{column}")
        activity = conn.execute("SELECT application_name FROM pg_stat_activity").fetchall()
        hits += [name for (name,) in activity if any(s in (name or "") for s in secrets)]
    return hits


def test_password_in_a_query_parameter_is_kept_out_of_repr_too(postgres_server, postgres_url):
    password = postgres_server.password
    url = postgres_url.replace(f":{password}@", "@") + f"&password={password}"
    store = PostgresStore(url)
    assert password not in repr(store) and len(store.find_generations()) == 0
    store.close()


def test_urls_that_are_not_postgresql_are_refused():
    assert is_postgres_url("postgres://h/db") and is_postgres_url("POSTGRESQL://h/db")
    assert not is_postgres_url("/tmp/store.sqlite") and not is_postgres_url(None)
    with pytest.raises(StoreError, match="postgresql://"):
        PostgresStore("mysql://u:p@h/db")


# --- connections and robustness ---------------------------------------------------------------


def test_connections_have_lock_and_statement_timeouts(store):
    [row] = store.query("SELECT current_setting('lock_timeout') AS l,"
                        " current_setting('statement_timeout') AS s")  # fmt: skip
    assert (row["l"], row["s"]) == ("30s", "2min")


def test_a_dropped_connection_is_reopened(store, postgres_server):
    store.record_generation(_finished("before"))
    pid = store.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    with postgres_server.admin("comfy_widgets") as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    store.record_generation(_finished("after"))
    assert [r.prompt_id for r in store.find_generations()] == ["before", "after"]
    assert store.query("SELECT pg_backend_pid() AS pid")[0]["pid"] != pid


def test_values_postgresql_refuses_are_stored_readably(store):
    gen = _finished(parameters={"cfg": float("nan"), "prompt": "a\x00b"}, error="bad\x00byte")
    gen.state = JobState.FAILED
    store.record_generation(gen)
    [row] = store.find_generations()
    assert row.parameters == {"cfg": "nan", "prompt": "a\ufffdb"}
    assert row.error == "bad\ufffdbyte"


def test_a_store_reached_again_after_the_server_restarts(store, postgres_server):
    store.record_generation(_finished("one"))
    postgres_server.restart()
    store.record_generation(_finished("two"))
    assert [r.prompt_id for r in store.find_generations()] == ["one", "two"]


# --- outputs on another machine ---------------------------------------------------------------


def test_outputs_resolve_on_another_machine(postgres_url, tmp_path):
    writer = PostgresStore(postgres_url, outputs_dir=tmp_path / "alice" / "outputs")
    writer.record_generation(_finished("p1", batch_id="b", batch_index=0))
    writer.close()
    reader = PostgresStore(postgres_url, outputs_dir=tmp_path / "bob" / "outputs")
    [out] = reader.find_generations()[0].saved_outputs
    written = tmp_path / "alice" / "outputs" / "b" / "p1_0.png"
    assert Path(out.local_path) == written  # a shared mount: the writer's path is readable
    copied = tmp_path / "bob" / "outputs" / "b" / "p1_0.png"
    copied.parent.mkdir(parents=True)
    written.rename(copied)  # a synced/copied folder: the same relative path here
    [out] = reader.find_generations()[0].saved_outputs
    assert Path(out.local_path) == copied
    copied.unlink()  # nowhere here: the server's file reference is what is left
    [out] = reader.find_generations()[0].saved_outputs
    assert (out.filename, out.subfolder, out.type) == ("a.png", "", "output")
    assert not Path(out.local_path).exists()
    reader.close()


def test_plan_and_prompts_keep_their_key_order(store):
    plan = [{"z": 1, "a": 2, "seed": 3}]
    prompts = [{"10": {"inputs": {"b": 1, "a": 2}}, "2": {"inputs": {}}}]
    store.record_batch(BatchRecord("b", None, 1, plan=plan, prompts=prompts))
    record = store.batch("b")
    assert list(record.plan[0]) == ["z", "a", "seed"]
    assert json.dumps(record.prompts) == json.dumps(prompts)


# --- a kernel killed mid-batch ----------------------------------------------------------------

CRASH_TOTAL, CRASH_KILL_AFTER = 20, 8

CRASH_RUNNER = """
import sys
from comfy_widgets.engine.client import connect
from comfy_widgets.records.postgres import PostgresStore
from comfy_widgets.workflow.workflow import Workflow

store = PostgresStore(sys.argv[2], outputs_dir=sys.argv[4])
client = connect(sys.argv[1], store=store)
wf = Workflow.load("comfy_widgets/examples/sd15_txt2img_api.json")
batch = client.batch(wf, count=int(sys.argv[3]), seed="random", steps=2, width=64, height=64,
                     concurrency=3)
print(batch.id, flush=True)
batch.result(timeout=300)
"""

CRASH_RESUMER = """
import json, sys
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.records.postgres import PostgresStore

store = PostgresStore(sys.argv[2], outputs_dir=sys.argv[4])
client = connect(sys.argv[1], store=store)
df = resume(sys.argv[3], client, store=store, poll_interval=0.05)
print(json.dumps(list(df["status"])), flush=True)
client.close()
store.close()
"""


def test_a_sigkilled_batch_is_resumed_from_postgresql_on_another_machine(
    postgres_url,
    sim_process,  # noqa: F811  (the fixture imported from test_resume_crash)
    tmp_path,
):
    """The runner (machine A) is killed mid-batch with writes still queued; a resumer with its
    own outputs folder (machine B) finishes the batch from the database and the server."""
    runner = subprocess.Popen(
        [sys.executable, "-c", CRASH_RUNNER, sim_process, postgres_url, str(CRASH_TOTAL),
         str(tmp_path / "a")],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    batch_id = runner.stdout.readline().strip()
    deadline = time.monotonic() + 120
    with _raw(postgres_url) as conn:
        count = "SELECT count(*) FROM comfyui_generations WHERE status = 'completed'"
        while conn.execute(count).fetchone()[0] < CRASH_KILL_AFTER:
            assert time.monotonic() < deadline, "the runner never completed enough items"
            time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    resumer = subprocess.run(
        [sys.executable, "-c", CRASH_RESUMER, sim_process, postgres_url, batch_id,
         str(tmp_path / "b")],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert resumer.returncode == 0, resumer.stderr[-2000:]
    assert json.loads(resumer.stdout.strip().splitlines()[-1]) == ["completed"] * CRASH_TOTAL
    store = PostgresStore(postgres_url, outputs_dir=tmp_path / "b")
    rows = store.find_generations(batch_id=batch_id)
    assert sorted(r.batch_index for r in rows) == list(range(CRASH_TOTAL))
    assert {r.state for r in rows} == {JobState.COMPLETED}
    assert all(Path(r.saved_outputs[0].local_path).is_file() for r in rows)
    record = store.batch(batch_id)
    assert (record.state, record.completed_count) == (BatchState.COMPLETED, CRASH_TOTAL)
    sent = [e["prompt"][2] for e in httpx.get(f"{sim_process}/history", timeout=10).json().values()]
    assert len(sent) == CRASH_TOTAL and all(sent.count(p) == 1 for p in record.prompts)
    store.close()
