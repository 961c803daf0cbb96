"""Our conversion against the real ComfyUI frontend 1.58.1, run in headless Chromium.

The frontend (PyPI `comfyui-frontend-package`, pinned in the `test` extra) is served by the
simulator with `--front-end-root`; no real ComfyUI runs. One page is shared by every case.

* Conversion: each source of `shared/workflows/frontend-1.58/` (the 12 templates as stored and
  as 1.58.1 re-saves them, and the 10 older workflows of `shared/workflows/ui/` with their
  re-saves) is loaded in the frontend on ComfyUI 0.27.0's /object_info and turned into a prompt
  (`app.loadGraphData` + `app.graphToPrompt`, as the goldens were made); `Workflow.load(...,
  object_info=0.27.0).to_api()` must give the same `class_type` and `inputs` in the same order,
  and the same `_meta`. One re-save the frontend itself mishandles is held to its golden file
  instead (KNOWN_FRONTEND_DEFECTS, checked to still be a defect).
* Drag-back (issue 15): a PNG the simulator saved for a `cw.rerun` job, and one whose prompt text
  has dynamic-prompt syntax, dropped on the canvas of the frontend served by that same server
  (`app.handleFile`), then queued: the queued prompt is the one that was sent.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_widgets import Store, connect, history, rerun
from comfy_widgets.workflow import pngmeta
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow
from tests.browser.frontend import OBJECT_INFO_0270, FrontendOracle
from tests.shared_data import WORKFLOWS

pytestmark = pytest.mark.browser

GOLDENS = WORKFLOWS / "frontend-1.58"
OLD_UI = WORKFLOWS / "ui"
FRONTEND_VERSION = "1.58.1"
JOB_TIMEOUT_S = 60


def _sources() -> list[tuple[str, Path]]:
    """(case id, source file) of every workflow behind the 22 frontend-1.58 goldens."""
    cases = []
    for expected in sorted((GOLDENS / "expected").glob("*.api.json")):
        stem = expected.name.removesuffix(".api.json")
        folders = (("ui", GOLDENS / "ui"), ("ui", OLD_UI), ("resaved", GOLDENS / "resaved"))
        for label, folder in folders:
            if (folder / f"{stem}.json").is_file():
                cases.append((f"{label}/{stem}", folder / f"{stem}.json"))
    return cases


SOURCES = _sources()
# Where the frontend's own output is not the rule: 1.58.1 re-saves api_bfl_flux2_max_sofa_swap
# with its Autogrow links on slots 4-6 and, loading that re-save, drops the link on slot 6
# (`model.images.image_3`), although the file has it. The converter follows the golden there;
# test_known_frontend_defects_still_happen checks the defect is still there.
KNOWN_FRONTEND_DEFECTS = {
    "resaved/api_bfl_flux2_max_sofa_swap": "drops the link into model.images.image_3",
}


@pytest.fixture(scope="module")
def frontend(chromium):
    """The real frontend on a simulator, one page for the whole module."""
    with FrontendOracle(chromium, object_info_file=OBJECT_INFO_0270) as oracle:
        assert oracle.version() == FRONTEND_VERSION
        yield oracle


@pytest.fixture(scope="module")
def object_info_0270() -> ObjectInfo:
    with gzip.open(OBJECT_INFO_0270, "rt", encoding="utf-8") as f:
        return ObjectInfo(json.load(f), source="server")


@pytest.fixture(scope="module")
def frontend_prompts(frontend) -> dict[str, str]:
    """The frontend's prompt text of each source, made once (cache shared by the tests)."""
    return {}


def _frontend_prompt(frontend, cache: dict[str, str], case: str, source: Path) -> dict[str, Any]:
    frontend.use_object_info(OBJECT_INFO_0270)
    if case not in cache:
        cache[case] = frontend.to_prompt_text(source.read_text(), source.stem)
    return json.loads(cache[case])


def _expected(frontend, cache: dict[str, str], case: str, source: Path) -> dict[str, Any]:
    """The frontend's prompt, or the golden file where the frontend has a known defect."""
    if case in KNOWN_FRONTEND_DEFECTS:
        golden = GOLDENS / "expected" / f"{source.stem}.api.json"
        return json.loads(golden.read_text())
    return _frontend_prompt(frontend, cache, case, source)


def _runs(prompt: dict[str, Any]) -> list[tuple[str, str | None, list[tuple[str, Any]]]]:
    """What the server runs, in order: (id, class_type, [(input, value)...]) per node."""
    return [(k, v.get("class_type"), list(v.get("inputs", {}).items())) for k, v in prompt.items()]


def test_the_oracle_reproduces_the_goldens(frontend, frontend_prompts):
    """The harness itself: every stored source gives its golden file, byte for byte."""
    differ = []
    for case, source in SOURCES:
        if case.startswith("ui/"):
            _frontend_prompt(frontend, frontend_prompts, case, source)
            golden = GOLDENS / "expected" / f"{source.stem}.api.json"
            if frontend_prompts[case] != golden.read_text().rstrip("\n"):
                differ.append(case)
    assert differ == []
    assert len([c for c, _ in SOURCES if c.startswith("ui/")]) == 22


def test_the_oracle_resaves_as_the_frontend_did(frontend):
    """`save` is `app.graph.serialize()` after loading: it gives the stored re-saves (here two
    whose re-save has no generic-type or fresh-uuid parts that depend on timing)."""
    frontend.use_object_info(OBJECT_INFO_0270)
    for source in (OLD_UI / "sd15_txt2img_default.json", GOLDENS / "ui" / "api_kling_o3_i2v.json"):
        resaved = json.loads((GOLDENS / "resaved" / source.name).read_text())
        assert frontend.save(source.read_text(), source.stem) == resaved, source.stem


def test_known_frontend_defects_still_happen(frontend, frontend_prompts):
    """The re-save the frontend loses a link of is still mishandled by the pinned frontend
    (when a new frontend fixes it, drop it from KNOWN_FRONTEND_DEFECTS)."""
    for case, source in SOURCES:
        if case in KNOWN_FRONTEND_DEFECTS:
            got = _frontend_prompt(frontend, frontend_prompts, case, source)
            golden = json.loads((GOLDENS / "expected" / f"{source.stem}.api.json").read_text())
            assert got != golden and set(got) == set(golden), case


@pytest.mark.parametrize("case,source", SOURCES, ids=[c for c, _ in SOURCES])
def test_conversion_equals_the_frontend(frontend, frontend_prompts, object_info_0270, case, source):
    """class_type and inputs of every node, in the frontend's node and key order."""
    want = _expected(frontend, frontend_prompts, case, source)
    ours = Workflow.load(source, object_info=object_info_0270).to_api()
    assert _runs(ours) == _runs(want)


@pytest.mark.parametrize("case,source", SOURCES, ids=[c for c, _ in SOURCES])
def test_meta_equals_the_frontend(frontend, frontend_prompts, object_info_0270, case, source):
    """_meta (title, cnr_id, ver) as 1.58.1 writes it."""
    want = _expected(frontend, frontend_prompts, case, source)
    ours = Workflow.load(source, object_info=object_info_0270).to_api()
    assert {k: v.get("_meta") for k, v in ours.items()} == {
        k: v.get("_meta") for k, v in want.items()
    }


# -- drag-back ------------------------------------------------------------------------------
# Playwright's sync API runs an event loop on this thread, so the client (whose blocking calls
# refuse to run under a loop) works on a thread of its own, like a script would.
@pytest.fixture
def on_sim(frontend, tmp_path):
    """Run `fn(client, store)` on a worker thread, with a recording client on the simulator
    that also serves the frontend (with the simulator's own node definitions)."""
    frontend.use_object_info(None)

    def call(fn: Any) -> Any:
        def work() -> Any:
            store = Store(tmp_path / "store.sqlite")
            client = connect(frontend.url, store=store)
            try:
                return fn(client, store)
            finally:
                client.close()
                store.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(work).result(timeout=2 * JOB_TIMEOUT_S)

    return call


def _recorded(store: Store, job: Any) -> None:
    """Wait for the job and for its store record."""
    job.result(timeout=JOB_TIMEOUT_S)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        rows = store.generation_records(generation_id=job.prompt_id)
        if rows and rows[0]["status"] == "completed":
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job.prompt_id} was not recorded as completed")


def _png(job: Any) -> bytes:
    [output] = [o for o in job.result(timeout=JOB_TIMEOUT_S).outputs if o.kind == "image"]
    assert pngmeta.is_png(output.data)
    return output.data


def _server_runs(prompt: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    return {k: (v.get("class_type"), v.get("inputs")) for k, v in prompt.items()}


def _rerun_png(client: Any, store: Store) -> tuple[dict[str, Any], bytes]:
    """Run a workflow, then rerun its generation on a server that has forgotten its cache (as
    after a restart; a cached rerun would only hand back the first run's file): the rerun's
    prompt and the PNG the server saved for it."""
    wf = Workflow.load(OLD_UI / "sd15_txt2img_default.json")
    first = client.run(wf, seed=11, steps=1, width=64, height=64)
    _recorded(store, first)
    httpx.post(f"{client.url}/free", json={"free_memory": True}, timeout=10).raise_for_status()
    generation_id = history(store=store)["generation_id"].iloc[0]
    again = rerun(generation_id, client, store=store)
    _recorded(store, again)
    names = [[o.filename for o in job.result().outputs] for job in (first, again)]
    assert names[0] != names[1], f"the rerun was served from the cache: {names}"
    return again.prompt, _png(again)


def test_a_reruns_png_loads_back_as_the_prompt_sent(frontend, on_sim):
    sent, png = on_sim(_rerun_png)
    queued = frontend.load_png(png, "rerun.png")
    assert _server_runs(queued) == _server_runs(sent)
    # ...from the UI graph, as for the first run (issue 15: rerun sent no extra_pnginfo)
    chunks = pngmeta.read_text_chunks(png)
    assert "workflow" in chunks, f"the rerun's PNG has no workflow chunk, only {sorted(chunks)}"


DYNAMIC_TEXT = "a {red|blue} cat, {key} // not a comment \\{braces\\} /* kept */"


def _dynamic_png(client: Any, store: Store) -> tuple[dict[str, Any], bytes]:
    """Run a workflow whose prompt text has dynamic-prompt syntax: its prompt and PNG."""
    wf = Workflow.load(OLD_UI / "sd15_txt2img_default.json")
    job = client.run(wf, seed=12, steps=1, width=64, height=64, prompt=DYNAMIC_TEXT)
    _recorded(store, job)
    return job.prompt, _png(job)


def test_dynamic_prompt_syntax_loads_back_as_the_text_sent(frontend, on_sim):
    sent, png = on_sim(_dynamic_png)
    assert sent["6"]["inputs"]["text"] == DYNAMIC_TEXT  # sent raw, which the frontend never does
    queued = frontend.load_png(png, "dynamic.png")
    assert queued["6"]["inputs"]["text"] == DYNAMIC_TEXT
    assert _server_runs(queued) == _server_runs(sent)
