"""Client benchmark against the simulated ComfyUI (in its own process); prints figures.

    .venv/bin/python benchmarks/client.py [--rounds 5]

1. Reconnect time after a real server restart (the process is killed and started again on the
   same port), measured from "the new server is listening" to "the socket is open again".
   Peer: a naive WebSocket client that retries every second, as simple scripts do.
   Goal: < 1 s.
2. Time to queue 20 prompts (from the first ``client.submit`` until every POST has answered)
   behind a long-running prompt, so the server only queues them. Peer: a naive sequential
   ``requests.post`` loop. Goal: < 0.2 s.
Each figure is the median of several rounds; the ratio is ours / peer (smaller is better).
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from comfy_widgets.engine.client import Client, connect

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"
PROMPT = json.loads((EXAMPLES / "empty_image_api.json").read_text())
BLOCKER = json.loads((EXAMPLES / "sd15_txt2img_api.json").read_text())
SECONDS_PER_STEP = 0.05
N_PROMPTS = 20


def free_port() -> int:
    """A port the OS says is free now (the simulator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(port: int) -> subprocess.Popen:
    """``python -m comfy_widgets.sim`` on ``port``; returns once it is listening."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comfy_widgets.sim",
            "--port",
            str(port),
            "--seconds-per-step",
            str(SECONDS_PER_STEP),
            "--no-previews",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    proc.stdout.readline()
    return proc


def stop_simulator(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def variant(i: int) -> dict:
    """The example prompt with a different colour, so no two prompts are cache hits."""
    prompt = copy.deepcopy(PROMPT)
    for node in prompt.values():
        if "color" in node["inputs"]:
            node["inputs"].update(color=1000 + i, width=64, height=64)
    return prompt


# --- reconnect --------------------------------------------------------------------------------


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        time.sleep(0.001)


def time_reconnect(
    proc: subprocess.Popen, port: int, connected: Callable[[], bool], connects: Callable[[], int]
) -> tuple[float, subprocess.Popen]:
    """Kill the server, start it again; seconds from "listening again" to "socket open again"."""
    before = connects()
    stop_simulator(proc)
    wait_for(lambda: not connected())
    proc = start_simulator(port)
    up = time.perf_counter()
    wait_for(lambda: connects() > before)
    return time.perf_counter() - up, proc


class NaivePeer:
    """A WebSocket follower that, like simple scripts, sleeps 1 s before each reconnect."""

    def __init__(self, url: str):
        self.url = url.replace("http", "ws", 1) + f"/ws?clientId={uuid.uuid4()}"
        self.connects = 0
        self.connected = False
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                with ws_connect(self.url) as ws:
                    self.connects += 1
                    self.connected = True
                    for _ in ws:
                        pass
            except (OSError, WebSocketException):
                pass
            self.connected = False
            time.sleep(1.0)


# --- queueing 20 prompts ----------------------------------------------------------------------


def blocked(client: Client) -> Callable[[], None]:
    """Start a long prompt so the measured ones only queue; returns a function that clears all."""
    blocker = copy.deepcopy(BLOCKER)
    for node in blocker.values():
        if node["class_type"] == "KSampler":
            node["inputs"].update(steps=10_000, seed=time.time_ns() % 2**32)
    job = client.submit(blocker)
    wait_for(lambda: job.state == "running")

    def clear() -> None:
        client.spawn(client.clear_queue()).result(10)
        job.cancel()
        wait_for(job.done)

    return clear


def ours_queue(client: Client, round_no: int) -> float:
    prompts = [variant(round_no * 100 + i) for i in range(N_PROMPTS)]
    clear = blocked(client)
    start = time.perf_counter()
    jobs = [client.submit(p) for p in prompts]
    wait_for(lambda: all(job.posted or job.done() for job in jobs))
    elapsed = time.perf_counter() - start
    failed = [job.error for job in jobs if job.state == "failed"]
    clear()
    if failed:
        raise RuntimeError(f"queueing failed: {failed[0]}")
    wait_for(lambda: all(job.done() for job in jobs))
    return elapsed


def peer_queue(url: str, client: Client, round_no: int) -> float:
    prompts = [variant(5000 + round_no * 100 + i) for i in range(N_PROMPTS)]
    clear = blocked(client)
    client_id = str(uuid.uuid4())
    start = time.perf_counter()
    for prompt in prompts:
        response = requests.post(
            f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=30
        )
        response.raise_for_status()
    elapsed = time.perf_counter() - start
    clear()
    return elapsed


def report(name: str, ours: list[float], peer: list[float], goal: float) -> None:
    o, p = statistics.median(ours), statistics.median(peer)
    verdict = "meets" if o < goal else "MISSES"
    print(
        f"{name}: ours {o * 1000:.0f} ms (median of {len(ours)}, min {min(ours) * 1000:.0f}), "
        f"peer {p * 1000:.0f} ms, ratio ours/peer {o / p:.2f}; goal < {goal * 1000:.0f} ms "
        f"{verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    port = free_port()
    proc = start_simulator(port)
    url = f"http://127.0.0.1:{port}"
    client = connect(url)
    try:
        client.submit(variant(-1)).result(timeout=60)  # warm up: socket open, pool ready
        ours_q = [ours_queue(client, r) for r in range(args.rounds)]
        peer_q = [peer_queue(url, client, r) for r in range(args.rounds)]
        report(f"queue {N_PROMPTS} prompts", ours_q, peer_q, 0.2)

        peer = NaivePeer(url)
        wait_for(lambda: peer.connected)
        ours_r, peer_r = [], []
        monitor = client.monitor
        for _ in range(args.rounds):
            elapsed, proc = time_reconnect(
                proc, port, lambda: monitor.connected, lambda: monitor.connects
            )
            ours_r.append(elapsed)
        for _ in range(args.rounds):
            elapsed, proc = time_reconnect(
                proc, port, lambda: peer.connected, lambda: peer.connects
            )
            peer_r.append(elapsed)
        peer.stopped = True
        report("reconnect after restart", ours_r, peer_r, 1.0)
    finally:
        client.close()
        stop_simulator(proc)


if __name__ == "__main__":
    main()
