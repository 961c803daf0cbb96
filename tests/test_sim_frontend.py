"""`sim --front-end-root` / `--object-info`: the simulator serving a web frontend's files and the
user-manager calls the frontend makes, without a browser (the real frontend runs in
tests/browser/test_frontend_oracle.py)."""

from __future__ import annotations

import gzip
import json

import aiohttp
import pytest

from comfy_widgets import sim
from comfy_widgets.sim import frontend
from comfy_widgets.sim.__main__ import parse_args
from tests.shared_data import REFERENCE

INDEX = "<!doctype html><title>ComfyUI</title>"


@pytest.fixture
def root(tmp_path):
    """A minimal front-end root: index.html, a script and a secret beside the root."""
    site = tmp_path / "static"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text(INDEX)
    (site / "assets" / "index-abc.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("not served")
    return site


@pytest.fixture
async def http(root, tmp_path):
    info = tmp_path / "object_info.json.gz"
    with gzip.open(info, "wt", encoding="utf-8") as f:
        json.dump({"OnlyNode": {"input": {"required": {}}, "output": []}}, f)
    server = await sim.start(front_end_root=root, object_info_file=info)
    async with aiohttp.ClientSession(server.url) as session:
        yield session
    await server.astop()


async def test_index_and_assets_are_served_and_nothing_outside(http):
    async with http.get("/") as r:
        assert r.status == 200 and await r.text() == INDEX
        assert "no-cache" in r.headers["Cache-Control"]
    async with http.get("/assets/index-abc.js") as r:
        assert r.status == 200 and r.content_type == "application/javascript"
    for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/nope.js"):
        async with http.get(path) as r:
            assert r.status == 404, path


async def test_the_simulated_api_keeps_its_routes(http):
    async with http.get("/api/object_info") as r:
        assert list(await r.json()) == ["OnlyNode"]
    async with http.get("/queue") as r:
        assert await r.json() == {"queue_running": [], "queue_pending": []}


async def test_single_user_settings_round_trip(http):
    async with http.get("/api/users") as r:
        assert await r.json() == {"storage": "server", "migrated": True}
    async with http.post("/api/settings", json={"Comfy.A": 1, "Comfy.B": "x"}) as r:
        assert r.status == 200
    async with http.post("/api/settings/Comfy.A", json=2) as r:
        assert r.status == 200
    async with http.get("/api/settings") as r:
        assert await r.json() == {"Comfy.A": 2, "Comfy.B": "x"}
    async with http.get("/api/settings/Comfy.Missing") as r:
        assert await r.json() is None
    async with http.post("/api/settings", json=[1]) as r:
        assert r.status == 400


async def test_user_files_store_list_move_delete(http):
    async with http.get("/api/userdata/workflows%2Fa.json") as r:
        assert r.status == 404
    async with http.post("/api/userdata/workflows%2Fa.json", data=b'{"n": 1}') as r:
        assert r.status == 200
    async with http.post("/api/userdata/workflows%2Fa.json?overwrite=false", data=b"{}") as r:
        assert r.status == 409
    async with http.get("/api/userdata?dir=workflows&recurse=true&full_info=true") as r:
        [entry] = await r.json()
        assert entry["path"] == "a.json" and entry["size"] == 8
    async with http.post("/api/userdata/workflows%2Fa.json/move/workflows%2Fb.json") as r:
        assert r.status == 200
    async with http.get("/api/userdata/workflows%2Fb.json") as r:
        assert await r.read() == b'{"n": 1}'
    async with http.get("/api/userdata/..%2F..%2Fetc%2Fpasswd") as r:
        assert r.status == 400
    async with http.delete("/api/userdata/workflows%2Fb.json") as r:
        assert r.status == 204
    async with http.get("/api/userdata?dir=workflows") as r:
        assert await r.json() == []


async def test_a_bare_comfyui_answers_nothing_for_custom_nodes(http):
    for path in ("/api/i18n", "/api/workflow_templates", "/api/global_subgraphs"):
        async with http.get(path) as r:
            assert await r.json() == {}, path


def test_a_folder_without_index_html_is_refused_with_the_reason(tmp_path):
    with pytest.raises(frontend.FrontendError, match="no index.html"):
        frontend.check_root(tmp_path)
    with pytest.raises(frontend.FrontendError, match="not a folder"):
        frontend.check_root(tmp_path / "missing")


def test_command_line_options():
    args = parse_args(["--front-end-root", "DIR", "--object-info", "oi.json.gz"])
    assert args.front_end_root == "DIR" and args.object_info == "oi.json.gz"


def test_object_info_file_is_served_as_recorded():
    with sim.serve(object_info_file=REFERENCE / "object_info_0.27.0.json.gz") as handle:
        info = handle.server.object_info()
    with gzip.open(REFERENCE / "object_info_0.27.0.json.gz", "rt", encoding="utf-8") as f:
        assert info == json.load(f)
