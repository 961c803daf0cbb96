"""Batch benchmark against the simulated server at zero seconds per step; prints figures.

    .venv/bin/python benchmarks/batch.py

Measures: time to queue 20 items, overhead per generation from queue to DataFrame row,
peak RSS of a 1,000-item sweep (in a subprocess), and the wall time of the same 20-item batch
with comfy-api-simplified against the same simulator (the ratio ours / theirs).
The simulator runs in its own process, so its CPU time is not counted as ours. The store (on by
default) lives in a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import comfy_widgets.engine.batch  # noqa: F401  (imported up front, as a session would have it)
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.plan import sweep
from comfy_widgets.workflow.workflow import Workflow

WORKFLOW = (
    Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples" / "sd15_txt2img_api.json"
)
FIXED = {"width": 512, "height": 512, "steps": 20}
N = 20
SWEEP_COUNT, SWEEP_CFG = 100, (1, 10, 1)  # 100 seeds x 10 cfg values = 1,000 items


def free_port() -> int:
    """A port the OS says is free now (the simulator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator() -> tuple[subprocess.Popen, str]:
    """``python -m comfy_widgets.sim`` at zero seconds per step, without previews."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comfy_widgets.sim",
            "--port",
            str(port),
            "--seconds-per-step",
            "0",
            "--no-previews",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    proc.stdout.readline()  # "Simulated ComfyUI listening on ..."
    return proc, f"http://127.0.0.1:{port}"


# --- ours ------------------------------------------------------------------------------------


async def warm_client(url: str, workflow: Workflow):
    """A connected client that has run one prompt (a session's state, not the first call's)."""
    client = connect(url)
    await client.run(workflow, seed=0, **FIXED)
    return client


async def time_to_queue(url: str, workflow: Workflow) -> tuple[float, float]:
    """Seconds from ``client.batch`` until all 20 POSTs are accepted, and until all are done."""
    client = await warm_client(url, workflow)
    start = time.perf_counter()
    batch = client.batch(workflow, count=N, seed="random", concurrency=N, **FIXED)
    marks: dict[str, float] = {}

    def on_change(b) -> None:
        if "queued" not in marks and sum(1 for j in b.jobs if j.posted) == N:
            marks["queued"] = time.perf_counter()

    batch.subscribe(on_change)
    await batch
    await client.aclose()
    return marks["queued"] - start, time.perf_counter() - start


async def overhead(url: str, workflow: Workflow, concurrency: int) -> dict[str, float]:
    """Per item: (submit -> POST accepted) + (server finished -> DataFrame row ready), in ms.

    With ``concurrency=1`` the server never makes an item wait, so this is the client's own
    latency. Also: the wall time not spent executing on the (serial) server, per item, and
    the CPU time our process spent per item.
    """
    client = await warm_client(url, workflow)
    cpu_start = time.process_time()
    submitted = time.time()
    batch = client.batch(workflow, count=N, seed="random", concurrency=concurrency, **FIXED)
    ready: dict[int, float] = {}

    def on_change(b) -> None:
        for job in b.jobs:
            if job.done() and job.batch_index not in ready:
                ready[job.batch_index] = time.time()

    batch.subscribe(on_change)
    df = await batch
    cpu_ms = (time.process_time() - cpu_start) / N * 1000
    per_item = []
    for job in batch.jobs:
        t = job.timings
        per_item.append(
            ((t["queued_at"] - t["created_at"]) + (ready[job.batch_index] - t["finished_at"]))
            * 1000
        )
    server_s = sum(j.timings["finished_at"] - j.timings["started_at"] for j in batch.jobs)
    wall = max(ready.values()) - submitted
    await client.aclose()
    assert len(df) == N
    return {
        "median_ms": statistics.median(per_item),
        "amortized_ms": (wall - server_s) / N * 1000,
        "server_ms": server_s / N * 1000,
        "cpu_ms": cpu_ms,
    }


def raw_posts(url: str, workflow: Workflow) -> float:
    """Seconds the simulator needs to accept 20 prompts POSTed back to back (its own floor)."""
    prompts = [workflow.apply({"seed": 10_000 + i, **FIXED}) for i in range(N)]
    with httpx.Client(base_url=url) as http:
        http.get("/queue")
        start = time.perf_counter()
        for prompt in prompts:
            http.post("/prompt", json={"prompt": prompt}).raise_for_status()
        elapsed = time.perf_counter() - start
    return elapsed


def ours_wall(url: str, workflow: Workflow, first_seed: int, size: int, store: bool) -> float:
    """Wall seconds of the 20-item batch through the plain-script API (as theirs is used).

    ``store=True`` is the default session (every generation recorded in SQLite, PNGs written).
    """
    client = connect(url, store="default" if store else None)
    fixed = {**FIXED, "width": size, "height": size}
    client.run(workflow, seed=0, **fixed).result(timeout=60)  # connected, like theirs below
    start = time.perf_counter()
    batch = client.batch(workflow, count=N, seed=("increment", first_seed), **fixed)
    df = batch.result(timeout=300)
    elapsed = time.perf_counter() - start
    client.close()
    assert (df["status"] == "completed").all() and df["image"].notna().all()
    return elapsed


# --- theirs ----------------------------------------------------------------------------------


def theirs_wall(url: str, first_seed: int, size: int) -> float:
    """Wall seconds of the same 20 generations with comfy-api-simplified (its documented loop)."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(url)
    wf = ComfyWorkflowWrapper(str(WORKFLOW))
    for name, value in {**FIXED, "width": size, "height": size}.items():
        title = "KSampler" if name == "steps" else "Empty Latent Image"
        wf.set_node_param(title, name, value)
    wf.set_node_param("KSampler", "seed", 0)
    api.queue_and_wait_images(wf, "Save Image")  # warm, like ours
    start = time.perf_counter()
    for seed in range(first_seed, first_seed + N):
        wf.set_node_param("KSampler", "seed", seed)
        images = api.queue_and_wait_images(wf, "Save Image")
        assert images
    return time.perf_counter() - start


# --- memory ----------------------------------------------------------------------------------


def sweep_child(url: str) -> None:
    """(Subprocess) run a 1,000-item sweep, build its DataFrame and its HTML, print peak RSS."""
    workflow = Workflow.load(WORKFLOW)
    client = connect(url)
    batch = client.batch(workflow, count=SWEEP_COUNT, seed="random", cfg=sweep(*SWEEP_CFG), **FIXED)
    df = batch.result(timeout=1800)
    df._repr_html_()
    client.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": len(df),
                "completed": int((df["status"] == "completed").sum()),
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )


def sweep_rss(url: str) -> dict:
    """Peak RSS of ``sweep_child`` measured in its own process."""
    out = subprocess.run(
        [sys.executable, __file__, "--sweep-child", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(url: str, workflow: Workflow, size: int) -> None:
    """Print the median (of 3, interleaved) wall times of ours and theirs and their ratio."""
    runs = [
        (
            theirs_wall(url, 10_000 * r, size),
            ours_wall(url, workflow, 10_000 * r + 1_000, size, store=True),
            ours_wall(url, workflow, 10_000 * r + 2_000, size, store=False),
        )
        for r in range(1, 4)
    ]
    theirs, ours, bare = (statistics.median(column) for column in zip(*runs, strict=True))
    print(
        f"{N}-item batch at {size}x{size}, wall time (median of 3): comfy-api-simplified "
        f"{theirs:.2f} s; ours {ours:.2f} s with the store, ratio {ours / theirs:.2f}x; "
        f"ours {bare:.2f} s without it, ratio {bare / theirs:.2f}x (goal <= 0.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        sweep_child(args.sweep_child)
        return
    os.environ["COMFY_WIDGETS_HOME"] = tempfile.mkdtemp(prefix="cw-bench-")  # a fresh store
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    proc, url = start_simulator()
    try:
        workflow = Workflow.load(WORKFLOW)
        queue_s, batch_s = asyncio.run(time_to_queue(url, workflow))
        floor_s = raw_posts(url, workflow)
        time.sleep(2)  # let the simulator work off those raw prompts
        print(
            f"time to queue {N}: {queue_s * 1000:.1f} ms (goal < 200 ms); the simulator alone "
            f"takes {floor_s * 1000:.1f} ms to accept {N} POSTs back to back; "
            f"whole batch done in {batch_s * 1000:.0f} ms"
        )
        seq = asyncio.run(overhead(url, workflow, concurrency=1))
        par = asyncio.run(overhead(url, workflow, concurrency=8))
        print(
            f"overhead per generation, queue -> DataFrame row (goal < 20 ms): "
            f"latency median {seq['median_ms']:.1f} ms at concurrency 1; "
            f"wall time not spent executing on the server {par['amortized_ms']:.1f} ms per item "
            f"at concurrency 8; our process's CPU {par['cpu_ms']:.1f} ms per item "
            f"(server execution {par['server_ms']:.0f} ms per item)"
        )
        for size in (512, 64):
            compare(url, workflow, size)
        rss = sweep_rss(url)
        print(
            f"1,000-item sweep ({rss['completed']}/{rss['rows']} completed): peak RSS "
            f"{rss['peak_rss_mb']:.0f} MB (goal < 300 MB)"
        )
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(os.environ["COMFY_WIDGETS_HOME"], ignore_errors=True)


if __name__ == "__main__":
    main()
