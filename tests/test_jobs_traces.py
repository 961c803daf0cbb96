"""Replay the recorded real-server traces through the monitor's router into Jobs.

No network: the client's HTTP calls that a Job makes while finishing (``/view``, ``/queue``,
``/history``) are answered by a small offline subclass from the recorded data.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from comfy_widgets.engine.client import Client
from comfy_widgets.engine.job import Job
from comfy_widgets.errors import ExecutionError, JobCancelledError
from comfy_widgets.transport import events as ev
from comfy_widgets.transport.classic import ClassicBackend
from tests.shared_data import REFERENCE
from tests.test_client_fakeserver import png_bytes

TRACES = REFERENCE / "traces"


class OfflineBackend(ClassicBackend):
    """A classic backend whose finishing-time HTTP calls are answered locally."""

    def __init__(self, history: dict | None = None, queue: dict | None = None):
        super().__init__("http://127.0.0.1:9")
        self._jobs_api = False  # the traces are 0.3.64's: /queue and /history
        self.viewed: list[str] = []
        self.history = history or {}
        self.queue = queue or {"queue_running": [], "queue_pending": []}

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        self.viewed.append(filename)
        return png_bytes()

    async def get_queue(self) -> dict:
        return self.queue

    async def get_history(self, prompt_id=None, max_items=None) -> dict:
        return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}


class OfflineClient(Client):
    """A Client on an OfflineBackend (``viewed``, ``history``, ``queue`` are the backend's)."""

    def __init__(self, history: dict | None = None, queue: dict | None = None):
        self.offline = OfflineBackend(history, queue)
        super().__init__(backend=self.offline)

    @property
    def viewed(self) -> list[str]:
        return self.offline.viewed

    @property
    def history(self) -> dict:
        return self.offline.history

    @property
    def queue(self) -> dict:
        return self.offline.queue


def posted_prompts(trace: str) -> dict[str, dict]:
    """prompt_id -> API prompt for every accepted POST /prompt of a trace."""
    calls = json.loads((TRACES / trace / "http.json").read_text())
    return {
        c["response_body"]["prompt_id"]: c["request_json"]["prompt"]
        for c in calls
        if c.get("path") == "/prompt" and c.get("method") == "POST" and c.get("status") == 200
    }


def frames(trace: str, name: str) -> list[ev.Event]:
    """The trace's frames as events; binary ones rebuilt from what the recorder decoded."""
    out = []
    for line in (TRACES / trace / name).read_text().splitlines():
        frame = json.loads(line)
        if frame["kind"] == "text":
            out.append(ev.parse_message(frame["msg"]))
        elif frame["kind"] == "binary":
            decoded = frame["decoded"]
            if frame["event_type"] == 1:
                out.append(ev.PreviewEvent(None, b"\xff\xd8jpeg", "image/jpeg"))
            elif frame["event_type"] == 4:
                meta = decoded["metadata"]
                out.append(
                    ev.PreviewEvent(
                        meta["prompt_id"],
                        b"\xff\xd8jpeg",
                        "image/jpeg",
                        meta["node_id"],
                        meta["display_node_id"],
                    )
                )
            elif frame["event_type"] == 3:
                out.append(ev.TextEvent(None, decoded["node_id"], decoded["text"]))
    return out


def watch_all(client: Client, prompts: dict[str, dict]) -> dict[str, Job]:
    """Register jobs as if POSTed while the (simulated) socket listens."""
    client.monitor._connected.set()
    client.monitor.connects = 1
    jobs = {}
    for prompt_id, prompt in prompts.items():
        job = Job(client, prompt, prompt_id=prompt_id)
        job.posted, job.state = True, "queued"
        client.monitor.jobs[prompt_id] = job
        jobs[prompt_id] = job
    return jobs


async def replay(trace: str, *names: str, client: Client | None = None) -> dict[str, Job]:
    client = client or OfflineClient()
    jobs = watch_all(client, posted_prompts(trace))
    history: dict[str, list[float]] = {pid: [] for pid in jobs}
    for pid, job in jobs.items():
        job.subscribe(lambda j, pid=pid: history[pid].append(j.progress))
    for name in names or ("ws.jsonl",):
        for event in frames(trace, name):
            client.monitor.dispatch(event)
    for job in jobs.values():
        if not (job.done() or job.finishing):
            continue
        try:
            await job
        except (ExecutionError, JobCancelledError):
            pass
    for pid, values in history.items():
        assert values == sorted(values), f"progress went down for {pid}: {values}"
    return jobs


async def test_normal_run_completes_with_outputs():
    jobs = await replay("b1_emptyimage_saveimage")
    (job,) = jobs.values()
    result = await job
    assert job.state == "completed" and job.progress == 100.0
    assert [o.filename for o in result.outputs] == ["ref_b1_00001_.png"]
    assert result.outputs[0].kind == "image" and result.images[0].size == (8, 8)
    assert all(n.state == "done" for n in job.nodes.values())
    assert job.timings["run_s"] is not None and job.timings["run_s"] >= 0


async def test_real_ksampler_run_tracks_nodes_previews_and_titles():
    client = OfflineClient()
    seen: list[tuple[str | None, str | None, float]] = []
    prompts = posted_prompts("g1_ksampler_real_no_feature_flags")
    jobs = watch_all(client, prompts)
    (job,) = jobs.values()
    job.subscribe(lambda j: seen.append((j.current_node, j.current_node_title, j.progress)))
    for event in frames("g1_ksampler_real_no_feature_flags", "ws.jsonl"):
        client.monitor.dispatch(event)
    await job
    assert any(node == "3" and title == "KSampler" for node, title, _ in seen)
    sampler_progress = [p for node, _, p in seen if node == "3"]
    assert len(set(sampler_progress)) >= 4
    assert job.preview == b"\xff\xd8jpeg" and job.preview_mime == "image/jpeg"
    assert job.nodes["3"].max == 4 and job.nodes["3"].state == "done"
    assert job.nodes["3"].started_at <= job.nodes["3"].finished_at
    assert client.viewed == ["ref_g1_00001_.png"]


async def test_preview_with_metadata_then_fully_cached_run():
    jobs = await replay("g2_ksampler_real_preview_metadata_then_cached")
    first, second = jobs.values()
    assert first.state == second.state == "completed"
    assert first.preview is not None and first.preview_node == "3"
    assert second.preview is None
    assert {n.state for n in second.nodes.values()} == {"cached"}
    assert [o.filename for o in second.outputs] == [o.filename for o in first.outputs]


async def test_partly_cached_run_counts_cached_nodes_as_done():
    jobs = await replay("c_same_prompt_twice_cached")
    run1, run2, run3 = jobs.values()
    assert all(job.state == "completed" for job in jobs.values())
    assert run1.nodes["1"].state == "done"
    assert run2.nodes["1"].state == "cached" and run2.nodes["2"].state == "cached"
    assert run3.nodes["1"].state == "cached" and run3.nodes["2"].state == "done"


async def test_execution_error_fails_the_job():
    jobs = await replay("d_execution_error")
    (job,) = jobs.values()
    assert job.state == "failed" and job.error_node == "2"
    assert "Saving image outside the output folder" in job.error_message
    assert job.nodes["2"].state == "error" and job.nodes["1"].state == "done"
    try:
        await job
    except ExecutionError as exc:
        assert exc.node_type == "SaveImage" and exc.prompt_id == job.prompt_id
    else:
        raise AssertionError("expected ExecutionError")


async def test_interrupt_cancels_the_job():
    for trace in ("e1_interrupt_global", "e2_interrupt_targeted_prompt_id"):
        jobs = await replay(trace)
        (job,) = jobs.values()
        assert job.state == "cancelled"
        assert 0 < job.progress < 100


async def test_queue_with_two_clients_runs_in_number_order():
    client = OfflineClient()
    prompts = posted_prompts("f1_queue_two_clients")
    ids = json.loads((TRACES / "f1_queue_two_clients" / "prompt_ids.json").read_text())
    mine = {pid: p for pid, p in prompts.items() if pid not in (ids["J3"],)}
    jobs = watch_all(client, mine)
    order = []
    for job in jobs.values():
        job.subscribe(
            lambda j: (
                order.append(j.prompt_id)
                if j.state == "running" and j.prompt_id not in order
                else None
            )
        )
    for event in frames("f1_queue_two_clients", "ws_client_A.jsonl"):
        client.monitor.dispatch(event)
    for pid in (ids["J1"], ids["J5"], ids["J2"]):
        await jobs[pid]
    assert order == [ids["J1"], ids["J5"], ids["J2"]]
    # J4 was deleted from the queue: the refresh triggered by `status` finds it nowhere
    with pytest.raises(JobCancelledError):
        await jobs[ids["J4"]]


async def test_bystander_sees_only_broadcasts():
    client = OfflineClient()
    jobs = watch_all(client, posted_prompts("b4_progress_text_binary_type3"))
    for event in frames("b4_progress_text_binary_type3", "ws_client_B_bystander.jsonl"):
        client.monitor.dispatch(event)
    (job,) = jobs.values()
    assert job.state == "queued"
    assert client.monitor.queue_remaining == 0


async def test_progress_text_is_attached_to_the_running_node():
    jobs = await replay("b4_progress_text_binary_type3", "ws_client_A_submitter.jsonl")
    (job,) = jobs.values()
    assert job.nodes["2"].text == "width: 80, height: 48\n batch size: 2"


async def test_reconnect_trace_attributes_node_only_executing_and_finishes():
    """After the h reconnect, `executing {node}` has no prompt_id; progress lost while away."""
    trace = "h_reconnect_mid_run"
    (pid,) = posted_prompts(trace)
    client = OfflineClient(queue={"queue_running": [[1, pid, {}, {}, []]], "queue_pending": []})
    jobs = watch_all(client, posted_prompts(trace))
    job = jobs[pid]
    for event in frames(trace, "ws_first_connection.jsonl"):
        client.monitor.dispatch(event)
    before = job.progress
    client.monitor.running_prompt_id = None
    await client.monitor.reconcile([job], lost="resubmit")
    assert client.monitor.running_prompt_id == pid and job.state == "running"
    for event in frames(trace, "ws_after_reconnect_same_clientId.jsonl"):
        client.monitor.dispatch(event)
    result = await job
    assert result.status == "completed" and before < 100
    assert [o.filename for o in result.outputs] == ["ref_h_00001_.png"]


async def test_finished_while_away_completes_from_history():
    """A prompt that ended while the socket was down is finished from /history/{id}."""
    history = json.loads((TRACES.parent / "http" / "history_by_id.json").read_text())["body"]
    ((pid, entry),) = history.items()
    client = OfflineClient(history=history)
    (job,) = watch_all(client, {pid: entry["prompt"][2]}).values()
    await client.monitor.reconcile([job], lost="resubmit")
    result = await job
    assert result.status == "completed"
    expected = [i["filename"] for out in entry["outputs"].values() for i in out["images"]]
    assert [o.filename for o in result.outputs] == expected


class EagerBackend(OfflineBackend):
    """Starts each prompt before answering its POST, as a free real ComfyUI does."""

    async def queue_prompt(self, prompt, *, prompt_id=None, front=False, extra_data=None):
        await asyncio.sleep(0.005)
        self.monitor.dispatch(ev.ExecutionStartEvent(prompt_id, 1))
        await asyncio.sleep(0.005)
        return {"prompt_id": prompt_id, "number": 1, "node_errors": {}}


async def test_queued_at_is_not_after_started_at_when_execution_starts_before_the_answer():
    client = Client(backend=EagerBackend())
    job = Job(client, posted_prompts("b1_emptyimage_saveimage").popitem()[1])
    client.monitor.jobs[job.prompt_id] = job
    await job._post()
    assert job.state == "running"
    assert job.timings["queued_at"] <= job.timings["started_at"]


async def test_outputs_executed_while_the_socket_was_down_come_from_history():
    """Seen on ComfyUI 0.3.64: an output node that ran during a reconnect sent its `executed`
    to no socket; the job must still list its image (from /history), in /history's order."""
    pid = "reconnected"
    empty = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}}
    prompt = {
        "1": empty,
        "20": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "21": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    outputs = {
        node: {"images": [{"filename": f"n{node}.png", "subfolder": "", "type": "temp"}]}
        for node in ("20", "21")
    }
    entry = {"outputs": outputs, "status": {"status_str": "success", "completed": True}}
    client = OfflineClient(history={pid: entry})
    (job,) = watch_all(client, {pid: prompt}).values()
    monitor = client.monitor
    for event in (
        ev.ExecutionStartEvent(pid, 1),
        ev.ExecutingEvent(pid, "1"),
        ev.ExecutingEvent(pid, "20"),
    ):
        monitor.dispatch(event)
    monitor.connects += 1  # the socket dropped and came back while node 20 ran
    monitor._note_missed_frames()
    for event in (
        ev.ExecutingEvent(None, "21"),
        ev.ExecutedEvent(pid, "21", "21", outputs["21"]),
        ev.ExecutionSuccessEvent(pid, 2),
        ev.ExecutingEvent(pid, None),
    ):
        monitor.dispatch(event)
    result = await job
    assert [o.filename for o in result.outputs] == ["n20.png", "n21.png"]
