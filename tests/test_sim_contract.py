"""Contract tests: replay the recorded real-server scenarios against the simulator.

For each trace in shared/comfyui-reference/traces the same workflow is run on the simulator with
the same client actions, and the frame sequence is compared with the real server's: message
types, each message's field names (in order) and the values that do not depend on time or ids
(node ids, cached lists, step counts, queue counts, progress states, file names, binary event
types and preview metadata keys).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import struct
import uuid
from pathlib import Path

import aiohttp
import pytest

from comfy_widgets import sim
from comfy_widgets.sim.faults import MALFORMED_TEXT
from tests.shared_data import REFERENCE

TRACES = REFERENCE / "traces"
FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
TIMEOUT = 20
HOLD = 3600.0  # seconds_per_step that holds a prompt until the test releases or interrupts it


# -- reading frames ---------------------------------------------------------------------------
def reference_frames(path: Path) -> list[dict]:
    """The text and binary frames of a recorded jsonl trace, in order."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["kind"] in ("text", "binary")]


def decode(message: aiohttp.WSMessage) -> dict:
    """A received frame in the recorder's format (`kind` text with `msg`, or binary)."""
    if message.type == aiohttp.WSMsgType.TEXT:
        try:
            return {"kind": "text", "msg": json.loads(message.data), "raw": message.data}
        except ValueError:
            return {"kind": "junk", "raw": message.data}
    data = message.data
    event_type, second = struct.unpack(">II", data[:8])
    decoded: dict = {}
    if event_type == 4:
        decoded["metadata"] = json.loads(data[8 : 8 + second])
    elif event_type == 3:
        decoded["node_id"] = data[8 : 8 + second].decode()
        decoded["text"] = data[8 + second :].decode()
    return {"kind": "binary", "event_type": event_type, "format": second, "decoded": decoded}


def _file_name(name: str) -> str:
    return re.sub(r"ComfyUI_temp_[a-z]{5}_", "ComfyUI_temp_xxxxx_", name)


def _progress_nodes(nodes: dict, loose: bool) -> tuple:
    out = []
    for node_id, e in nodes.items():
        values = (
            ()
            if loose
            else (e["value"], type(e["value"]).__name__, e["max"], type(e["max"]).__name__)
        )
        out.append((node_id, e["state"], tuple(e)) + values)
    return tuple(out)


def signature(frame: dict, loose: bool = False) -> tuple:
    """What must match between a real and a simulated frame (ids and times left out).

    `loose` also leaves out step values, for traces where the step at which a client
    reconnects depends on timing.
    """
    if frame["kind"] == "binary":
        event_type = frame["event_type"]
        if event_type == 4:
            return ("binary", 4, tuple(frame["decoded"]["metadata"]))
        if event_type == 3:
            return ("binary", 3, frame["decoded"]["node_id"], frame["decoded"]["text"])
        return ("binary", event_type, frame["format"])
    kind, data = frame["msg"]["type"], frame["msg"]["data"]
    detail: tuple = ()
    if kind == "status":
        detail = (data["status"]["exec_info"]["queue_remaining"],)
    elif kind == "execution_cached":
        detail = tuple(data["nodes"])
    elif kind == "executing":
        detail = (data["node"],)
    elif kind == "progress":
        detail = (data["node"],) if loose else (data["node"], data["value"], data["max"])
    elif kind == "progress_state":
        detail = _progress_nodes(data["nodes"], loose)
    elif kind == "executed":
        detail = (
            data["node"],
            tuple(data["output"]),
            tuple(
                (tuple(i), _file_name(i["filename"]), i["type"])
                for i in data["output"].get("images", [])
            ),
        )
    elif kind == "execution_error":
        detail = (
            data["node_id"],
            data["node_type"],
            tuple(data["executed"]),
            data["exception_type"],
            data["exception_message"].splitlines()[0],
            tuple(data["current_inputs"]),
            tuple(sorted(data["current_outputs"])),
        )
    elif kind == "execution_interrupted":
        detail = (data["node_id"], data["node_type"], tuple(sorted(data["executed"])))
    return (kind, tuple(data)) + detail


def collapse_steps(signatures: list[tuple]) -> list[tuple]:
    """Merge consecutive repeats of a three-frame block (one sampler step) into one."""
    out = list(signatures)
    i = 0
    while i + 6 <= len(out):
        if out[i : i + 3] == out[i + 3 : i + 6]:
            del out[i : i + 3]
        else:
            i += 1
    return out


def assert_same(sim_frames: list[dict], ref_frames: list[dict], loose: bool = False) -> None:
    """The simulated frame sequence matches the recorded one."""
    got = [signature(f, loose) for f in sim_frames]
    want = [signature(f, loose) for f in ref_frames]
    if loose:
        got, want = collapse_steps(got), collapse_steps(want)
    assert got == want


# -- driving the simulator --------------------------------------------------------------------
class Socket:
    """A recording WebSocket client of the simulator."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    async def next(self, timeout: float = TIMEOUT) -> dict:
        message = await self.ws.receive(timeout=timeout)
        assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
        frame = decode(message)
        self.frames.append(frame)
        return frame

    async def until(self, predicate) -> dict:
        """Read frames until one satisfies `predicate`; returns it."""
        while True:
            frame = await self.next()
            if predicate(frame):
                return frame

    async def until_sentinel(self) -> None:
        """Read up to the junk frame broadcast by `finish`, which is then dropped."""
        await self.until(lambda f: f.get("raw") == MALFORMED_TEXT)
        self.frames.pop()


def is_msg(kind: str, **fields):
    """A predicate: a text frame of this type whose data has these values."""

    def check(frame: dict) -> bool:
        if frame["kind"] != "text" or frame["msg"]["type"] != kind:
            return False
        return all(frame["msg"]["data"].get(k) == v for k, v in fields.items())

    return check


class Driver:
    """HTTP and WebSocket access to one simulated server."""

    def __init__(self, server: sim.SimServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.posted: list[str] = []

    async def connect(self, client_id: str | None, flags: bool = False) -> Socket:
        url = self.server.ws_url + (f"?clientId={client_id}" if client_id else "")
        socket = Socket(await self.session.ws_connect(url))
        if flags:
            await socket.ws.send_json(FLAGS)
            await socket.until(is_msg("feature_flags"))
        else:
            await socket.until(is_msg("status"))
        return socket

    async def post(self, prompt: dict, client_id: str | None, **extra) -> str:
        body = {"prompt": prompt, **extra}
        if client_id is not None:
            body["client_id"] = client_id
        async with self.session.post(self.server.url + "/prompt", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
        self.posted.append(data["prompt_id"])
        return data["prompt_id"]

    async def post_json(self, path: str, body: object = None) -> None:
        kwargs = {} if body is None else {"json": body}
        async with self.session.post(self.server.url + path, **kwargs) as r:
            assert r.status == 200

    async def history(self, prompt_id: str) -> dict:
        async with self.session.get(f"{self.server.url}/history/{prompt_id}") as r:
            return await r.json()

    async def wait_done(self, prompt_ids: list[str] | None = None) -> None:
        """Poll until the prompts are in the history and the queue is empty."""
        for prompt_id in prompt_ids or self.posted:
            while not await self.history(prompt_id):
                await asyncio.sleep(0.01)
        while self.server.queue.remaining():
            await asyncio.sleep(0.01)

    async def warm_up(self, prompt: dict) -> None:
        """Run a variant of `prompt` first, so its loader/encoder nodes are cached."""
        variant = copy.deepcopy(prompt)
        for node in variant.values():
            inputs = node["inputs"]
            if "seed" in inputs:
                inputs["seed"] += 1000
                inputs["steps"] = 1
            if "filename_prefix" in inputs:
                inputs["filename_prefix"] = "warm_up"
        prompt_id = await self.post(variant, None)
        await self.wait_done([prompt_id])
        self.posted.remove(prompt_id)

    def hold(self) -> None:
        """Keep the running sampler step waiting (until release or an interrupt)."""
        self.server.settings.seconds_per_step = HOLD

    def release(self, seconds_per_step: float = 0.01) -> None:
        """Let steps run again."""
        self.server.settings.seconds_per_step = seconds_per_step

    async def finish(self, *sockets: Socket) -> None:
        """Wait for every posted prompt, then read each socket up to a broadcast sentinel."""
        await self.wait_done()
        self.server.faults.send_malformed()
        for socket in sockets:
            await socket.until_sentinel()
        for socket in sockets:
            await socket.ws.close()


def workflow(trace: str, name: str = "workflow_api.json") -> dict:
    return json.loads((TRACES / trace / name).read_text())


def cid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def driver():
    server = await sim.start(seconds_per_step=0.01, emulate="0.3.64")
    async with aiohttp.ClientSession() as session:
        yield Driver(server, session)
    await server.astop()


# -- the scenarios ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "trace", ["b1_emptyimage_saveimage", "b2_emptyimage_previewimage", "d_execution_error"]
)
async def test_single_run_matches(driver, trace):
    client = cid()
    socket = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_progress_text_frame_reaches_submitter_and_bystander(driver):
    trace = "b4_progress_text_binary_type3"
    a, b = cid(), cid()
    socket_a = await driver.connect(a)
    socket_b = await driver.connect(b)
    await driver.post(workflow(trace), a)
    await driver.finish(socket_a, socket_b)
    assert_same(socket_a.frames, reference_frames(TRACES / trace / "ws_client_A_submitter.jsonl"))
    assert_same(socket_b.frames, reference_frames(TRACES / trace / "ws_client_B_bystander.jsonl"))


async def test_same_prompt_twice_is_cached_then_partly_cached(driver):
    trace = "c_same_prompt_twice_cached"
    client = cid()
    socket = await driver.connect(client)
    for run in (1, 2, 3):
        await driver.post(workflow(trace, f"workflow_api_run{run}.json"), client)
        await driver.wait_done()
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_cold_ksampler_run_sends_type1_previews(driver):
    trace = "g1_ksampler_real_no_feature_flags"
    client = cid()
    socket = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_feature_flags_bring_type4_previews_then_full_cache(driver):
    trace = "g2_ksampler_real_preview_metadata_then_cached"
    await driver.warm_up(workflow("g1_ksampler_real_no_feature_flags"))
    client = cid()
    socket = await driver.connect(client, flags=True)
    for _ in range(2):
        await driver.post(workflow(trace), client)
        await driver.wait_done()
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_global_interrupt_stops_at_next_step(driver):
    trace = "e1_interrupt_global"
    await driver.warm_up(workflow(trace))
    client = cid()
    socket = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await socket.until(is_msg("progress", value=2))
    driver.hold()
    await driver.post_json("/interrupt")
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_targeted_interrupt_ignores_other_ids(driver):
    trace = "e2_interrupt_targeted_prompt_id"
    await driver.warm_up(workflow(trace))
    client = cid()
    socket = await driver.connect(client, flags=True)
    prompt_id = await driver.post(workflow(trace), client)
    await socket.until(is_msg("progress", value=2))
    driver.hold()
    await driver.post_json("/interrupt", {"prompt_id": str(uuid.UUID(int=0))})
    driver.release()
    await socket.until(is_msg("progress", value=4))
    driver.hold()
    await driver.post_json("/interrupt", {"prompt_id": prompt_id})
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))
    entry = (await driver.history(prompt_id))[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}


async def test_queue_of_two_clients_with_front_and_delete(driver):
    trace = "f1_queue_two_clients"
    await driver.warm_up(workflow(trace, "workflow_api_J1.json"))
    a, b = cid(), cid()
    socket_a = await driver.connect(a)
    socket_b = await driver.connect(b)
    driver.hold()
    await driver.post(workflow(trace, "workflow_api_J1.json"), a)
    await socket_a.until(is_msg("executing", node="3"))
    await driver.post(workflow(trace, "workflow_api_J2.json"), a)
    await driver.post(workflow(trace, "workflow_api_J3.json"), b)
    j4 = await driver.post(workflow(trace, "workflow_api_J4.json"), a)
    await driver.post(workflow(trace, "workflow_api_J5.json"), a, front=True)
    await driver.post_json("/queue", {"delete": [j4]})
    driver.posted.remove(j4)
    driver.release()
    await driver.finish(socket_a, socket_b)
    assert_same(socket_a.frames, reference_frames(TRACES / trace / "ws_client_A.jsonl"))
    assert_same(socket_b.frames, reference_frames(TRACES / trace / "ws_client_B.jsonl"))


async def test_queue_clear_then_interrupt(driver):
    trace = "f2_queue_clear"
    a, b = cid(), cid()
    socket_a = await driver.connect(a)
    socket_b = await driver.connect(b)
    await driver.post(workflow(trace, "workflow_api_K1.json"), a)
    await socket_a.until(is_msg("progress", value=1))
    driver.hold()
    small = workflow("b1_emptyimage_saveimage")
    await driver.post(small, a)
    await driver.post(small, b)
    await driver.post_json("/queue", {"clear": True})
    await driver.post_json("/interrupt")
    driver.posted[1:] = []
    await driver.finish(socket_a, socket_b)
    assert_same(socket_a.frames, reference_frames(TRACES / trace / "ws_client_A.jsonl"))
    assert_same(socket_b.frames, reference_frames(TRACES / trace / "ws_client_B.jsonl"))


async def test_prompt_without_client_id_sends_only_broadcasts(driver):
    trace = "i_prompt_without_client_id"
    await driver.warm_up(workflow(trace))
    listener = await driver.connect(cid())
    await driver.post(workflow(trace), None)
    await driver.finish(listener)
    assert_same(listener.frames, reference_frames(TRACES / trace / "ws_listener.jsonl"))


async def test_reconnect_mid_run_gets_current_node_then_the_rest(driver):
    trace = "h_reconnect_mid_run"
    await driver.warm_up(workflow(trace))
    client = cid()
    first = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await first.until(is_msg("progress", value=3))
    driver.hold()
    await first.ws.close()
    while client in driver.server.sockets:  # else the old handler would unregister the new one
        await asyncio.sleep(0.01)
    second = await driver.connect(client)
    driver.release()
    await driver.finish(second)
    assert_same(first.frames, reference_frames(TRACES / trace / "ws_first_connection.jsonl"))
    assert second.frames[1]["msg"]["data"] == {"node": "3"}
    assert_same(
        second.frames,
        reference_frames(TRACES / trace / "ws_after_reconnect_same_clientId.jsonl"),
        loose=True,
    )


async def test_duplicate_client_id_leaves_the_new_socket_deaf(driver):
    trace = "h2_duplicate_clientId_old_socket_closed"
    client = cid()
    first = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await first.until(is_msg("progress", value=2))
    driver.hold()
    second = await driver.connect(client)
    driver.release()
    await second.until(lambda f: f["kind"] == "binary")
    driver.hold()
    await first.ws.close()
    while len(driver.server.sockets) > 0:  # the old socket's handler unregisters the clientId
        await asyncio.sleep(0.01)
    driver.release()
    await driver.wait_done()
    driver.server.faults.send_malformed()
    with pytest.raises(asyncio.TimeoutError):  # steps sent before the close, then silence
        while True:
            await second.next(timeout=0.3)
    assert not second.ws.closed
    assert all(f["kind"] != "junk" for f in second.frames)
    reference = reference_frames(TRACES / trace / "ws_socket2_same_clientId.jsonl")
    assert_same(second.frames, reference, loose=True)
    await second.ws.close()


def placeholders(text: str, ids: dict[str, str]) -> str:
    """A raw frame with its ids and timestamps replaced by fixed tokens."""
    for value, token in ids.items():
        text = text.replace(value, token)
    return re.sub(r'"timestamp": \d+', '"timestamp": 0', text)


async def test_raw_text_frames_are_serialized_like_comfyui(driver):
    trace = TRACES / "b3_raw_text_frames"
    recorded = [
        line
        for line in (trace / "ws_raw_text_frames.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    request = json.loads((trace / "http.json").read_text())[0]
    client = cid()
    socket = await driver.connect(client, flags=True)
    prompt_id = await driver.post(workflow("b3_raw_text_frames"), client)
    await driver.finish(socket)
    sent = [f["raw"] for f in socket.frames]
    real_prompt_id = json.loads(recorded[4])["data"]["prompt_id"]
    assert [placeholders(f, {client: "C", prompt_id: "P"}) for f in sent] == [
        placeholders(f, {request["request_json"]["client_id"]: "C", real_prompt_id: "P"})
        for f in recorded
    ]


async def test_connect_idle_variants(driver):
    trace = TRACES / "a_connect_idle"
    url = driver.server.ws_url
    client = cid()
    plain = Socket(await driver.session.ws_connect(f"{url}?clientId={client}"))
    await plain.next()
    anonymous = Socket(await driver.session.ws_connect(url))
    await anonymous.next()
    flagged = Socket(await driver.session.ws_connect(f"{url}?clientId={cid()}"))
    await flagged.ws.send_json(FLAGS)
    await flagged.next()
    await flagged.next()
    late = Socket(await driver.session.ws_connect(f"{url}?clientId={cid()}"))
    await late.ws.send_json({"type": "hello", "data": {}})
    await late.ws.send_json(FLAGS)
    await late.next()
    await driver.finish(plain, anonymous, flagged, late)
    for socket, name in (
        (plain, "ws_with_clientId_idle"),
        (anonymous, "ws_without_clientId"),
        (flagged, "ws_with_feature_flags"),
        (late, "ws_feature_flags_not_first_message"),
    ):
        assert_same(socket.frames, reference_frames(trace / f"{name}.jsonl"))
    assert plain.frames[0]["msg"]["data"]["sid"] == client
    assert re.fullmatch(r"[0-9a-f]{32}", anonymous.frames[0]["msg"]["data"]["sid"])
    assert flagged.frames[1]["msg"]["data"] == {
        "supports_preview_metadata": True,
        "max_upload_size": 104857600,
    }
