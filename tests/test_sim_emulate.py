"""`--emulate`: the simulator serves the endpoints, node set and rules of the chosen version."""

from __future__ import annotations

import aiohttp
import pytest

from comfy_widgets import sim
from comfy_widgets.sim.__main__ import parse_args
from comfy_widgets.sim.versions import Emulate


def test_command_line_defaults_to_the_newest_and_accepts_both():
    assert parse_args([]).emulate == "0.27"
    assert parse_args(["--emulate", "0.3.64"]).emulate == "0.3.64"
    with pytest.raises(SystemExit):
        parse_args(["--emulate", "0.1"])


def test_unknown_version_is_a_clear_error():
    assert Emulate.parse("0.27.0") is Emulate.V0_27
    assert Emulate.parse(None) is Emulate.V0_27
    with pytest.raises(ValueError, match=r"cannot emulate ComfyUI '1\.0'.*0\.3\.64, 0\.27"):
        Emulate.parse("1.0")


@pytest.mark.parametrize(
    ("version", "classes", "jobs_status", "features"),
    [("0.3.64", 496, 404, 2), ("0.27", 791, 200, 5)],
)
async def test_each_version_serves_its_node_set_and_endpoints(
    version, classes, jobs_status, features
):
    server = await sim.start(emulate=version)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            async with http.get("/object_info") as r:
                assert len(await r.json()) == classes
            async with http.get("/api/jobs") as r:
                assert r.status == jobs_status
            async with http.get("/features") as r:
                assert len(await r.json()) == features
            async with http.get("/system_stats") as r:
                stats = await r.json()
            body = {"prompt": {}, "prompt_id": "my-run-1"}
            async with http.post("/prompt", json=body) as r:
                error = (await r.json())["error"]["type"]
    finally:
        await server.astop()
    assert stats["system"]["comfyui_version"].startswith(version)
    # 0.3.64 takes any prompt_id and then finds no outputs; 0.27 rejects the id first.
    assert error == ("prompt_no_outputs" if version == "0.3.64" else "invalid_prompt_id")


async def test_threaded_server_takes_the_version_too():
    with sim.serve(emulate="0.3.64") as handle:
        async with aiohttp.ClientSession(handle.url) as http, http.get("/api/jobs") as r:
            assert r.status == 404
