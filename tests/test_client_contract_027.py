"""The CLIENT against what a real ComfyUI 0.27.0 answered (tests/reference/comfyui-0.27).

test_sim_contract_027 checks the simulator against the recordings; here ClassicBackend reads
the recorded answers themselves (served by an httpx transport that replays them), so a drift
between the client and the real server is caught even where the simulator agrees with the
client. 0.3.64 behaviour is checked with a 404 for ``/api/jobs``, as 0.3.64 answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_widgets.engine.client import Client
from comfy_widgets.engine.job import Job
from comfy_widgets.errors import ParameterError, PromptValidationError
from comfy_widgets.states import JobState
from comfy_widgets.transport.classic import ClassicBackend, is_canonical_uuid
from comfy_widgets.widgets.form import node_error_messages

REF = Path(__file__).resolve().parent / "reference" / "comfyui-0.27"
TRACES, HTTP, ASSETS = REF / "traces", REF / "http", REF / "assets"


def recorded(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return [e for e in (data if isinstance(data, list) else [data]) if "label" in e]


def exchange(path: Path, label: str) -> dict[str, Any]:
    (found,) = [e for e in recorded(path) if e["label"] == label]
    return found


class Replay:
    """Answers requests with recorded exchanges, in the order given; logs what was asked."""

    def __init__(self, *answers: dict[str, Any], jobs_api: bool = True):
        self.answers = list(answers)
        self.jobs_api = jobs_api
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.asked.append(f"{request.method} {path}")
        if path == "/api/jobs" and request.url.params.get("limit") == "1":
            if not self.jobs_api:  # what 0.3.64 answers
                return httpx.Response(404, text="404: Not Found")
            return answer(json.loads((HTTP / "jobs_empty.json").read_text()))
        for n, e in enumerate(self.answers):
            if e["method"] == request.method and e["path"].split("?")[0] == path:
                del self.answers[n]
                return answer(e)
        raise AssertionError(f"nothing recorded for {request.method} {request.url}")


def answer(e: dict[str, Any]) -> httpx.Response:
    body = e.get("response_body")
    if body is None:
        return httpx.Response(e["status"], text=e.get("response_text") or "")
    return httpx.Response(e["status"], json=body)


def backend(replay: Replay) -> ClassicBackend:
    b = ClassicBackend("http://127.0.0.1:9")
    b._http = httpx.AsyncClient(base_url=b.url, transport=httpx.MockTransport(replay))
    return b


# -- capability ---------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs_api", [True, False])
async def test_jobs_api_is_probed_once_and_cached(jobs_api):
    replay = Replay(jobs_api=jobs_api)
    b = backend(replay)
    assert await b.has_jobs_api() is jobs_api
    assert await b.has_jobs_api() is jobs_api
    assert replay.asked == ["GET /api/jobs"]
    b.forget_capabilities()
    assert await b.has_jobs_api() is jobs_api
    assert len(replay.asked) == 2


# -- outcomes from GET /api/jobs/{id} -------------------------------------------------------------
async def test_completed_job_outcome_from_the_jobs_api():
    e = exchange(TRACES / "b1_emptyimage_saveimage" / "http.json", "GET /api/jobs/{id}")
    pid = e["response_body"]["id"]
    replay = Replay(e)
    outcome = await backend(replay).outcome(pid)
    assert replay.asked[-1] == f"GET /api/jobs/{pid}"  # not /history
    assert outcome is not None and outcome.state == JobState.COMPLETED
    (node,) = outcome.outputs
    assert (node.node_id, [f.filename for f in node.files]) == ("2", ["ref_b1_00001_.png"])
    assert outcome.prompt == e["response_body"]["workflow"]["prompt"]
    body = e["response_body"]
    assert outcome.started_at == body["execution_start_time"] / 1000
    assert outcome.finished_at == body["execution_end_time"] / 1000


async def test_failed_job_outcome_names_the_node():
    e = exchange(TRACES / "d_execution_error" / "http.json", "GET /api/jobs/{id}")
    outcome = await backend(Replay(e)).outcome(e["response_body"]["id"])
    assert outcome is not None and outcome.state == JobState.FAILED
    assert outcome.error is not None
    assert (outcome.error.node_id, outcome.error.node_type) == ("2", "SaveImage")
    assert "outside the output folder" in outcome.error.exception_message


@pytest.mark.parametrize(
    ("trace", "label"),
    [
        ("e1_interrupt_global", "GET /api/jobs/{id} (interrupted)"),
        ("e3_cancel_running_job", "GET /api/jobs/{id} (cancelled)"),
    ],
)
async def test_interrupted_job_is_cancelled(trace, label):
    e = exchange(TRACES / trace / "http.json", label)
    outcome = await backend(Replay(e)).outcome(e["response_body"]["id"])
    assert outcome is not None and outcome.state == JobState.CANCELLED
    assert outcome.error is None


async def test_running_pending_and_unknown_jobs_have_no_outcome():
    running = exchange(TRACES / "e1_interrupt_global" / "http.json", "GET /api/jobs/{id} (running)")
    f1 = TRACES / "f1_queued_behind" / "http.json"
    pending = exchange(f1, "GET /api/jobs/{J2} (pending)")
    gone = exchange(f1, "GET /api/jobs/{J3} (cancelled while pending)")
    unknown = json.loads((HTTP / "jobs_unknown_id.json").read_text())
    b = backend(Replay(running, pending, gone, unknown))
    for e in (running, pending, gone, unknown):
        assert await b.outcome(e["path"].rsplit("/", 1)[1]) is None


async def test_asset_ids_are_kept_on_output_refs():
    e = exchange(ASSETS / "b1_emptyimage_saveimage" / "http.json", "GET /api/jobs/{id}")
    outcome = await backend(Replay(e)).outcome(e["response_body"]["id"])
    assert outcome is not None
    (ref,) = outcome.outputs[0].files
    assert ref.asset_id == "ca7dc805-01c7-42e4-beba-c772ba9f1766"


async def test_asset_ids_without_jobs_api_come_from_history():
    e = exchange(ASSETS / "b1_emptyimage_saveimage" / "http.json", "GET /history/{id}")
    pid = e["path"].rsplit("/", 1)[1]
    replay = Replay(e, jobs_api=False)
    outcome = await backend(replay).outcome(pid)
    assert replay.asked[-1] == f"GET /history/{pid}"
    assert outcome is not None
    assert outcome.outputs[0].files[0].asset_id == "ca7dc805-01c7-42e4-beba-c772ba9f1766"


# -- the queue from GET /api/jobs -----------------------------------------------------------------
async def test_queue_from_the_jobs_listing_equals_the_queue():
    f1 = TRACES / "f1_queued_behind" / "http.json"
    listing = exchange(f1, "GET /api/jobs (running + pending)")
    queue = exchange(f1, "GET /queue (1 running, 2 pending)")
    b = backend(Replay(listing, queue))
    from_jobs = await b.queue_ids()
    from_queue = await b.queue_state()
    assert (
        from_jobs.running_ids
        == from_queue.running_ids
        == [queue["response_body"]["queue_running"][0][1]]
    )
    assert from_jobs.pending_ids == from_queue.pending_ids
    assert len(from_jobs.pending_ids) == 2


# -- cancel ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs_api", [True, False])
async def test_cancel_uses_the_jobs_api_where_there_is_one(jobs_api):
    e = exchange(
        TRACES / "e3_cancel_running_job" / "http.json", "POST /api/jobs/{id}/cancel (running)"
    )
    pid = e["path"].split("/")[3]
    if jobs_api:
        replay = Replay(e)
    else:
        ok = {"method": "POST", "status": 200, "response_body": None, "response_text": ""}
        replay = Replay({**ok, "path": "/queue"}, {**ok, "path": "/interrupt"}, jobs_api=False)
    await backend(replay).cancel(pid)
    expected = [f"POST /api/jobs/{pid}/cancel"] if jobs_api else ["POST /queue", "POST /interrupt"]
    assert replay.asked[1:] == expected


# -- POST /prompt errors --------------------------------------------------------------------------
def prompt_cases() -> list[dict[str, Any]]:
    return [e for e in recorded(HTTP / "post_prompt_responses.json") if e["status"] == 400]


@pytest.mark.parametrize("case", prompt_cases(), ids=lambda e: e["label"])
async def test_every_recorded_rejection_is_a_prompt_validation_error(case):
    b = backend(Replay(case))
    body = case["request_json"] if isinstance(case.get("request_json"), dict) else {}
    prompt = body.get("prompt") if isinstance(body.get("prompt"), dict) else {}
    with pytest.raises(PromptValidationError) as caught:
        await b.submit(prompt, "0b7b5f3e-1c1e-4d3c-9a57-3c1b2f0e9d11")
    error = caught.value
    recorded_error = case["response_body"]["error"]
    assert error.error_type == recorded_error["type"]
    assert recorded_error["message"] in str(error)
    named = case["response_body"]["node_errors"] or (
        {recorded_error["extra_info"]["node_id"]: {}}
        if recorded_error["extra_info"].get("node_id")
        else {}
    )
    assert sorted(error.node_errors) == sorted(named)
    assert error.node_id == (next(iter(named)) if len(named) == 1 else None)
    if named:  # the form shows it at that node (a field or the node's section)
        keys = node_error_messages(error.node_errors)
        assert {k.split(".")[0] for k in keys} == set(named)


async def test_missing_node_type_is_filed_under_its_node_and_job_error_node():
    case = exchange(HTTP / "post_prompt_responses.json", "missing_node_type: unknown class")
    client = Client(backend=backend(Replay(case)))
    job = Job(client, case["request_json"]["prompt"], recorder=client.recorder)
    job.backend.wait_connected = _connected  # type: ignore[method-assign]
    job.backend.watch = lambda watcher: None  # type: ignore[method-assign]
    await job._submit()
    assert job.state == JobState.FAILED
    assert job.error_node == "1"
    assert node_error_messages(job.error.node_errors) == {  # type: ignore[union-attr]
        "1": "Node 'EmptyImage' not found. The custom node may not be installed.: Node ID '#1'"
    }


async def _connected(timeout: float = 5.0) -> bool:
    return True


@pytest.mark.parametrize(
    "bad", ["91DCBD28-892E-4081-AEAB-4ECFAAEFCA6C", "91dcbd28892e4081aeab4ecfaaefca6c", "x", "12"]
)
async def test_non_canonical_prompt_ids_are_refused_before_sending(bad):
    replay = Replay()
    with pytest.raises(ParameterError, match="lowercase hyphenated UUID"):
        await backend(replay).submit({}, bad)
    assert replay.asked == []
    assert not is_canonical_uuid(bad)


def test_jobs_make_canonical_prompt_ids():
    client = Client(backend=ClassicBackend("http://127.0.0.1:9"))
    assert is_canonical_uuid(Job(client, {}).prompt_id)


# -- a prompt the server rewrote ------------------------------------------------------------------
async def test_a_prompt_the_server_rewrote_is_recorded_as_it_ran():
    e = exchange(TRACES / "b1_emptyimage_saveimage" / "http.json", "GET /api/jobs/{id}")
    body = json.loads(json.dumps(e["response_body"]))
    ran = body["workflow"]["prompt"]
    sent = json.loads(json.dumps(ran))
    sent["2"]["class_type"] = "OldSaveImage"  # as if the server had replaced this class
    client = Client(backend=backend(Replay({**e, "response_body": body})))
    job = Job(client, sent, prompt_id=body["id"])
    job.posted = True
    outcome = await client.backend.outcome(body["id"])
    assert outcome is not None
    job._take_server_prompt(outcome.prompt)
    assert job.prompt == ran and job.record().prompt == ran
    # number formatting alone (8 kept as 8.0) is no rewrite
    same = json.loads(json.dumps(ran))
    same["1"]["inputs"]["width"] = 64.0
    job2 = Job(client, same)
    job2._take_server_prompt(ran)
    assert job2.prompt is same


@pytest.mark.parametrize(
    "label", ["dependency_cycle (two nodes)", "missing_node_type: no class_type"]
)
async def test_node_level_errors_show_under_the_nodes_section(label):
    """0.27 names each node of a cycle (and the node of a missing class): the form shows the
    message under that node's section title, not by the buttons."""
    from types import SimpleNamespace

    from comfy_widgets.widgets.form import ParameterForm
    from comfy_widgets.workflow.workflow import Workflow

    case = exchange(HTTP / "post_prompt_responses.json", label)
    with pytest.raises(PromptValidationError) as caught:
        await backend(Replay(case)).submit({}, "0b7b5f3e-1c1e-4d3c-9a57-3c1b2f0e9d11")
    chain = {  # the same node ids without the cycle, so the form can be built
        "4": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
        "1": {"class_type": "ImageBlur", "inputs": {"image": ["4", 0], "blur_radius": 1}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }
    form = ParameterForm(Workflow.load(chain, name="chain"))
    form._on_job_change(SimpleNamespace(state="failed", error=caught.value))
    errors = form._section_errors
    named = sorted(caught.value.node_errors)
    assert named == (["1", "2"] if "cycle" in label else ["1"])
    for node_id, error in errors.items():
        assert (error.value != "") == (node_id in named), node_id
        assert error.layout.display == ("block" if node_id in named else "none")
    expected = "Dependency cycle detected" if "cycle" in label else "has no class_type"
    assert expected in errors["1"].value
    assert "Fix the fields marked above" in form.message.value
    form.clear_errors()
    assert all(e.value == "" for e in errors.values())


def test_an_inputs_display_name_from_object_info_is_its_label():
    """0.27's object_info gives some inputs a ``display_name`` (35 inputs): the form uses it."""
    from comfy_widgets.workflow.object_info import ObjectInfo
    from comfy_widgets.workflow.workflow import Workflow

    info = ObjectInfo.bundled()
    spec = info.input("TextGenerate", "sampling_mode")
    assert spec is not None and spec.options["display_name"] == "Sampling Mode"
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    raw = {k: json.loads(json.dumps(info.raw[k])) for k in ("EmptyImage", "ImageBlur", "SaveImage")}
    raw["ImageBlur"]["input"]["required"]["blur_radius"][1]["display_name"] = "Blur Radius"
    wf = Workflow.load(prompt, ObjectInfo(raw, source="user"))
    labels = {p.key: p.label for p in wf.parameters()}
    assert labels["2.blur_radius"] == "Blur Radius"
    assert labels["1.width"] == "Width"  # no display_name: the name made readable


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(200, text="<html>a proxy's login page</html>"),
        httpx.Response(200, json={"jobs": "not a list"}),
    ],
    ids=["502", "html", "wrong-shape"],
)
async def test_a_refused_or_malformed_jobs_probe_falls_back_to_history(refusal):
    e = exchange(TRACES / "b1_emptyimage_saveimage" / "http.json", "GET /history/{id}")
    pid = e["path"].rsplit("/", 1)[1]
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return refusal if request.url.path == "/api/jobs" else answer(e)

    b = ClassicBackend("http://127.0.0.1:9")
    b._http = httpx.AsyncClient(base_url=b.url, transport=httpx.MockTransport(handler))
    outcome = await b.outcome(pid)
    assert asked == ["/api/jobs", f"/history/{pid}"]
    assert outcome is not None and outcome.state == JobState.COMPLETED


async def test_refused_credentials_on_the_probe_are_an_authentication_error():
    from comfy_widgets.errors import AuthenticationError

    b = ClassicBackend("http://127.0.0.1:9")
    refused = httpx.MockTransport(lambda request: httpx.Response(401, text="no"))
    b._http = httpx.AsyncClient(base_url=b.url, transport=refused)
    with pytest.raises(AuthenticationError):
        await b.has_jobs_api()
    assert b._jobs_api is None
