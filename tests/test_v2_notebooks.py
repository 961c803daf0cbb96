"""The quickstart and the sweep notebook run unchanged against comfy-api-proxy + simulator.

nbval runs them in a subprocess with ``COMFYUI_URL`` at the proxy and ``COMFY_API_KEY`` set, as a
user of a self-hosted v2 server (or Comfy Cloud) would: ``cw.connect()`` detects v2 by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.test_v2_public import seeds_run

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["notebooks/01_quickstart.ipynb", "notebooks/02_parameter_sweep.ipynb"]


def test_quickstart_and_sweep_notebooks_run_through_the_v2_proxy(v2_stack, tmp_path):
    home = tmp_path / "home"
    env = {
        **os.environ,
        "COMFYUI_URL": v2_stack.url,
        "COMFY_API_KEY": v2_stack.token,
        "COMFY_WIDGETS_HOME": str(home),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax"] + NOTEBOOKS,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"{len(NOTEBOOKS)} passed" in run.stdout or "passed" in run.stdout
    # only the proxy knew the simulator: everything it ran came through v2
    ran = seeds_run(v2_stack.sim_history())
    sweep = Counter({seed: 4 for seed in (101, 202, 303, 404, 505)})
    assert ran & sweep == sweep, "the sweep's 20 items ran through the proxy, once each"
    assert sum(ran.values()) >= 1 + 20 + 3  # quickstart's run, the sweep, the prompt batch
    stored = [p.read_bytes() for p in home.rglob("*") if p.is_file()]
    assert stored and all(v2_stack.token.encode() not in data for data in stored)
    assert any(f"{v2_stack.url}/api/v2".encode() in data for data in stored)
