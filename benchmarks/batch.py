"""Batch benchmark against the simulated server at zero seconds per step; prints figures.

    .venv/bin/python benchmarks/batch.py

Measures: time to queue 20 items, overhead per generation from queue to DataFrame row,
peak RSS of a 1,000-item sweep (in a subprocess), and the wall time of the same 20-item batch
with comfy-api-simplified against the same simulator (the ratio ours / theirs).
The simulator runs in its own process, so its CPU time is not counted as ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import comfy_widgets.batch  # noqa: F401  (imported up front, as a session would have it)
from comfy_widgets.client import connect
from comfy_widgets.plan import sweep
from comfy_widgets.workflow import Workflow

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


async def overhead(url: str, workflow: Workflow) -> dict[str, float]:
    """Per item: (submit -> POST accepted) + (server finished -> DataFrame row ready), in ms.

    Also the CPU time our process spent per item (the client's own cost, whatever the load).
    """
    client = await warm_client(url, workflow)
    cpu_start = time.process_time()
    submitted = time.time()
    batch = client.batch(workflow, count=N, seed="random", **FIXED)
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
        sent = max(submitted, t["created_at"])
        per_item.append(
            ((t["queued_at"] - sent) + (ready[job.batch_index] - t["finished_at"])) * 1000
        )
    server_s = sum(j.timings["finished_at"] - j.timings["started_at"] for j in batch.jobs)
    wall = max(ready.values()) - submitted
    await client.aclose()
    assert len(df) == N
    return {
        "median_ms": statistics.median(per_item),
        "mean_ms": statistics.mean(per_item),
        "amortized_ms": (wall - server_s) / N * 1000,
        "server_ms": server_s / N * 1000,
        "cpu_ms": cpu_ms,
    }


def ours_wall(url: str, workflow: Workflow, first_seed: int) -> float:
    """Wall seconds of the 20-item batch through the plain-script API (as theirs is used)."""
    client = connect(url)
    client.run(workflow, seed=0, **FIXED).result(timeout=60)  # connected, like theirs below
    start = time.perf_counter()
    batch = client.batch(workflow, count=N, seed=("increment", first_seed), **FIXED)
    df = batch.result(timeout=300)
    elapsed = time.perf_counter() - start
    client.close()
    assert (df["status"] == "completed").all() and df["image"].notna().all()
    return elapsed


# --- theirs ----------------------------------------------------------------------------------


def theirs_wall(url: str, first_seed: int) -> float:
    """Wall seconds of the same 20 generations with comfy-api-simplified (its documented loop)."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(url)
    wf = ComfyWorkflowWrapper(str(WORKFLOW))
    for name, value in FIXED.items():
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        sweep_child(args.sweep_child)
        return
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    proc, url = start_simulator()
    try:
        workflow = Workflow.load(WORKFLOW)
        queue_s, batch_s = asyncio.run(time_to_queue(url, workflow))
        print(
            f"time to queue {N}: {queue_s * 1000:.1f} ms (goal < 200 ms); "
            f"whole batch done in {batch_s * 1000:.0f} ms"
        )
        o = asyncio.run(overhead(url, workflow))
        print(
            f"overhead per generation, queue -> DataFrame row: median {o['median_ms']:.1f} ms, "
            f"mean {o['mean_ms']:.1f} ms, amortized {o['amortized_ms']:.1f} ms (goal < 20 ms); "
            f"our CPU {o['cpu_ms']:.1f} ms per item; server time {o['server_ms']:.0f} ms per item"
        )
        runs = [
            (theirs_wall(url, 1000 * r), ours_wall(url, workflow, 1000 * r + 500))
            for r in range(1, 4)
        ]
        theirs = statistics.median(t for t, _ in runs)
        ours = statistics.median(o for _, o in runs)
        print(
            f"{N}-item batch wall time (median of 3): ours {ours:.2f} s, "
            f"comfy-api-simplified {theirs:.2f} s, "
            f"ratio {ours / theirs:.2f}x (goal <= 0.5x)"
        )
        rss = sweep_rss(url)
        print(
            f"1,000-item sweep ({rss['completed']}/{rss['rows']} completed): peak RSS "
            f"{rss['peak_rss_mb']:.0f} MB (goal < 300 MB)"
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
