"""Sync access to the client's server calls (``client.call``) and clear errors from them."""

from __future__ import annotations

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.errors import BlockingCallError, HTTPStatusError


@pytest.fixture
def served():
    with sim.serve(checkpoints=["mine.safetensors"]) as handle:
        client = connect(handle.url)
        yield client
        client.close()


def test_call_runs_a_coroutine_function_or_a_coroutine_from_plain_code(served):
    assert "mine.safetensors" in served.call(served.models, "checkpoints")
    assert "checkpoints" in served.call(served.models())
    assert served.call(served.get_queue)["queue_running"] == []


def test_an_unknown_model_folder_names_the_folder_and_what_exists(served):
    with pytest.raises(HTTPStatusError) as caught:
        served.call(served.models, "nope")
    message = str(caught.value)
    assert caught.value.status_code == 404
    assert "'nope'" in message and "checkpoints" in message and "loras" in message


async def test_call_inside_a_running_loop_says_to_await():
    server = await sim.start()
    client = connect(server.url)
    try:
        coro = client.models("checkpoints")
        with pytest.raises(BlockingCallError, match="await client.models"):
            client.call(coro)
        with pytest.raises(BlockingCallError, match="await client.models"):
            client.call(client.models, "checkpoints")
        assert "checkpoints" in await client.models()  # awaiting stays the way in a loop
    finally:
        await client.aclose()
        await server.astop()
