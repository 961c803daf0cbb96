"""Test-wide fixtures and helpers: an isolated store folder for every test, the simulated server,
a polling helper with a deadline, and small PNG images.

Import the helpers with ``from tests.conftest import png_bytes, until``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest
from PIL import Image


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


@pytest.fixture
async def server():
    """The simulated ComfyUI on a free loopback port, in the test's loop (0.01 s per step)."""
    from comfy_widgets import sim

    server = await sim.start(seconds_per_step=0.01)
    yield server
    await server.astop()


async def until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` on the running loop until it holds; fail after ``timeout`` seconds.

    No timing is asserted: the deadline only keeps a broken test from hanging.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


def png_bytes(
    color: str | tuple[int, ...] = (200, 30, 30),
    size: int | tuple[int, int] = 8,
    mode: str = "RGB",
) -> bytes:
    """A PNG image of one colour (a name or a tuple), ``size`` pixels square or (w, h)."""
    dims = (size, size) if isinstance(size, int) else size
    buffer = io.BytesIO()
    Image.new(mode, dims, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def v2_stack(tmp_path):
    """The simulator and the real comfy-api-proxy in front of it, on loopback; stopped after."""
    from tests.v2_servers import V2Stack

    stack = V2Stack(tmp_path)
    try:
        yield stack.start()
    finally:
        stack.stop()
