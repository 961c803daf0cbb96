"""The simulator and the real ``comfy-api-proxy`` in front of it, as subprocesses on loopback.

``V2Stack`` starts ``python -m comfy_widgets.sim`` and ``comfy-api-proxy`` (the PyPI package,
installed by the ``test`` extra) on free 127.0.0.1 ports, waits for each with a deadline, can
kill and restart the proxy on the same port (with its ``--state-dir``, so Idempotency-Keys
survive), reads the simulator's own ``/history`` (what really ran), and stops both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

START_DEADLINE = 20.0
STOP_DEADLINE = 3.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    """Wait until ``url`` answers 200, the process dies, or ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r} exited {proc.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {deadline}s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop one process we started, by its pid, with a deadline."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_DEADLINE)


class V2Stack:
    """One simulator and one proxy in front of it."""

    def __init__(self, workdir: Path, *, token: str = "test-key", seconds_per_step: float = 0.02):
        self.workdir = workdir
        self.token = token
        self.seconds_per_step = seconds_per_step
        self.sim_port = free_port()
        self.proxy_port = free_port()
        self.state_dir = workdir / "proxy-state"
        self.sim: subprocess.Popen[bytes] | None = None
        self.proxy: subprocess.Popen[bytes] | None = None

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def url(self) -> str:
        """The proxy's base URL (v2 is under /api/v2)."""
        return f"http://127.0.0.1:{self.proxy_port}"

    def start(self) -> V2Stack:
        self.start_sim()
        self.start_proxy()
        return self

    def start_sim(self) -> None:
        log = self.workdir / "sim.log"
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "comfy_widgets.sim",
                "--port",
                str(self.sim_port),
                "--seconds-per-step",
                str(self.seconds_per_step),
                "--data-dir",
                str(self.workdir / "sim-data"),
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        _wait_http(self.sim_url + "/system_stats", self.sim, log, START_DEADLINE)

    def start_proxy(self) -> None:
        log = self.workdir / "proxy.log"
        self.proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "comfy_api_proxy.cli",
                "run",
                "--comfyui",
                self.sim_url,
                "--port",
                str(self.proxy_port),
                "--token",
                self.token,
                "--state-dir",
                str(self.state_dir),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        _wait_http(self.url + "/api/v2/health", self.proxy, log, START_DEADLINE)

    def kill_proxy(self) -> None:
        """SIGKILL the proxy: no graceful shutdown, as a crash."""
        _stop(self.proxy, signal.SIGKILL)

    def restart_proxy(self) -> None:
        self.kill_proxy()
        self.start_proxy()

    def sim_history(self) -> dict[str, Any]:
        """The simulator's own record of every prompt it ran."""
        return httpx.get(self.sim_url + "/history", timeout=5.0).json()

    def stop(self) -> None:
        _stop(self.proxy)
        _stop(self.sim)
