"""Simulator CPU per prompt: how much the simulated ComfyUI costs to draw and serve a picture.

    .venv/bin/python benchmarks/sim.py [--prompts 20] [--size 512]

The simulator runs in its own process (``python -m comfy_widgets.sim``, zero seconds per step,
previews on). A plain HTTP client posts ``--prompts`` txt2img prompts one after the other (each
a new seed, so nothing is cached), waits for each in ``/history`` and downloads its PNG through
``/view``: what a notebook session asks of the simulator. The figure is the simulator
process's CPU time (user + system, from /proc) per prompt.

Peer, measured in the same run against the same process: the model-free EmptyImage -> SaveImage
prompt (a solid picture of the same size, no sampler, no previews). The ratio drawn / peer says
how much of a prompt's cost is the picture rather than the protocol.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"
TXT2IMG = json.loads((EXAMPLES / "sd15_txt2img_api.json").read_text())
EMPTY = json.loads((EXAMPLES / "empty_image_api.json").read_text())
DEADLINE_S = 60.0


def free_port() -> int:
    """A port the OS says is free now (the simulator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator() -> tuple[subprocess.Popen, str]:
    """``python -m comfy_widgets.sim`` at zero seconds per step; returns once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfy_widgets.sim", "--port", str(port), "--seconds-per-step", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "Simulated ComfyUI listening on ..."
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_size(prompt: dict, seed: int, size: int) -> dict:
    """A copy of the prompt with every seed, width and height input set."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        for name in ("seed", "noise_seed"):
            if name in inputs:
                inputs[name] = seed
        for name in ("width", "height"):
            if name in inputs:
                inputs[name] = size
        if "color" in inputs:
            inputs["color"] = seed % 0xFFFFFF
    return prompt


def run_one(http: httpx.Client, prompt: dict) -> None:
    """POST the prompt, wait for its history entry, then GET each output file."""
    prompt_id = http.post("/prompt", json={"prompt": prompt}).json()["prompt_id"]
    deadline = time.monotonic() + DEADLINE_S
    while not (entry := http.get(f"/history/{prompt_id}").json()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} did not finish in {DEADLINE_S} s")
        time.sleep(0.005)
    for output in entry[prompt_id]["outputs"].values():
        for image in output.get("images", []):
            r = http.get("/view", params=image)
            r.raise_for_status()


def cpu_per_prompt(pid: int, http: httpx.Client, prompt: dict, count: int, size: int) -> float:
    """Simulator CPU milliseconds per prompt, over `count` prompts with fresh seeds."""
    run_one(http, with_size(prompt, 10_000, size))  # warm: imports, fonts, first PNG
    start = cpu_seconds(pid)
    for seed in range(count):
        run_one(http, with_size(prompt, seed, size))
    return (cpu_seconds(pid) - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc, url = start_simulator()
    try:
        with httpx.Client(base_url=url, timeout=DEADLINE_S) as http:
            drawn, peer = [], []
            for _ in range(args.rounds):
                drawn.append(cpu_per_prompt(proc.pid, http, TXT2IMG, args.prompts, args.size))
                peer.append(cpu_per_prompt(proc.pid, http, EMPTY, args.prompts, args.size))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    d, p = statistics.median(drawn), statistics.median(peer)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"simulator CPU per prompt ({args.size}x{args.size}, median of {args.rounds} rounds "
        f"of {args.prompts}): txt2img {d:.1f} ms, EmptyImage->SaveImage {p:.1f} ms, "
        f"ratio {d / p:.2f}"
    )


if __name__ == "__main__":
    main()
