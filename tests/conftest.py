"""Test-wide fixtures: every test gets its own store folder, so no run writes into the repo."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_store_home(tmp_path, monkeypatch):
    """Point COMFY_WIDGETS_HOME at a fresh temp folder and clear COMFYUI_URL for each test."""
    home = tmp_path / "comfy_widgets_home"
    monkeypatch.setenv("COMFY_WIDGETS_HOME", str(home))
    monkeypatch.delenv("COMFYUI_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the whole session (tests/pg_server.py)."""
    from tests.pg_server import TempPostgres

    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """``postgresql://…`` of a fresh, empty store: a new schema (dropped after the test)."""
    schema = postgres_server.create_schema()
    try:
        yield postgres_server.url(schema=schema)
    finally:
        postgres_server.drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def recorder(request, tmp_path):
    """The same store tests run against the embedded SQLite store and a real PostgreSQL."""
    folder = tmp_path / "store"
    if request.param == "sqlite":
        from comfy_widgets.records.sqlite import Store

        store = Store(folder / "store.sqlite")
    else:
        from comfy_widgets.records.postgres import PostgresStore

        store = PostgresStore(
            request.getfixturevalue("postgres_url"), outputs_dir=folder / "outputs"
        )
    try:
        yield store
    finally:
        store.close()
