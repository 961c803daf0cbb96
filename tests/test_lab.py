"""`comfy-widgets lab`: settings overrides, the JupyterLab command line, and a real launch."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from comfy_widgets.lab import LAB_OVERRIDES, QUICKSTART, lab_argv, write_settings_overrides

WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
NEWS_PLUGIN = "@jupyterlab/apputils-extension:notification"


def test_overrides_turn_on_widget_state_and_off_news(tmp_path):
    target = write_settings_overrides(tmp_path / "settings")
    written = json.loads(target.read_text())
    assert written[WIDGETS_PLUGIN] == {"saveState": True}
    assert written[NEWS_PLUGIN]["fetchNews"] == "false"
    assert written[NEWS_PLUGIN]["checkForUpdates"] is False


def test_overrides_keep_the_site_settings(tmp_path):
    base = tmp_path / "site"
    base.mkdir()
    (base / "page_config.json").write_text('{"disabledExtensions": {}}')
    (base / "overrides.json").write_text(
        json.dumps(
            {
                "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
                WIDGETS_PLUGIN: {"saveState": False, "other": 1},
            }
        )
    )
    target = write_settings_overrides(tmp_path / "settings", base)
    written = json.loads(target.read_text())
    assert written["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert written[WIDGETS_PLUGIN] == {"saveState": True, "other": 1}
    assert (tmp_path / "settings" / "page_config.json").is_file()
    assert json.loads((base / "overrides.json").read_text())[WIDGETS_PLUGIN]["saveState"] is False


def test_argv_opens_the_quickstart_when_present(tmp_path):
    (tmp_path / QUICKSTART).write_text("{}")
    argv = lab_argv(tmp_path, tmp_path / "s", port=9999, open_browser=False)
    assert argv[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.port=9999" in argv
    assert "--ServerApp.ip=127.0.0.1" in argv
    assert "--ServerApp.open_browser=False" in argv
    assert f"--LabApp.default_url=/lab/tree/{QUICKSTART}" in argv
    assert f"--LabApp.app_settings_dir={tmp_path / 's'}" in argv


def test_argv_without_quickstart_opens_the_folder(tmp_path):
    argv = lab_argv(tmp_path, tmp_path / "s")
    assert not any(a.startswith("--ServerApp.default_url") for a in argv)
    assert "--ServerApp.open_browser=True" in argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read(), resp.url


def _wait_for(url: str, token: str, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "comfy-widgets lab exited early"
        try:
            return _get(url, token)
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


CONSOLE_SCRIPT = str(Path(sys.executable).with_name("comfy-widgets"))


@pytest.fixture
def lab_process(tmp_path):
    """`comfy-widgets lab --no-browser` on a free port, with the simulator (COMFYUI_URL unset)."""
    root = tmp_path / "nb"
    root.mkdir()
    (root / QUICKSTART).write_text(
        json.dumps(
            {
                "cells": [],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    port, token = _free_port(), "lab-test-token"
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_URL"}
    env.update(
        JUPYTER_TOKEN=token,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
    )
    proc = subprocess.Popen(
        [CONSOLE_SCRIPT, "lab", str(root), "--no-browser", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc, f"http://127.0.0.1:{port}", token, tmp_path / "rt"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def _setting_default(body: bytes, key: str):
    """The default JupyterLab now gives a setting (overrides.json changes the schema default)."""
    return json.loads(body)["schema"]["properties"][key]["default"]


def _post(url: str, token: str) -> bytes:
    req = urllib.request.Request(url, method="POST", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def _server_env(runtime_dir: Path) -> dict[str, str]:
    """The environment of the running Jupyter server, which its kernels inherit."""
    (info,) = runtime_dir.glob("jpserver-*.json")
    pid = json.loads(info.read_text())["pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_lab_launch_serves_quickstart_with_widget_state_and_a_simulator(lab_process):
    proc, base, token, runtime_dir = lab_process
    line = proc.stdout.readline().decode()
    sim_url = re.search(r"simulated ComfyUI at (http://127\.0\.0\.1:\d+)", line)
    assert sim_url, line
    sim_url = sim_url.group(1)
    _wait_for(f"{base}/api/status", token, proc)
    assert _get(f"{sim_url}/system_stats", token)[0] == 200

    _, _, final_url = _get(f"{base}/?token={token}", token)
    assert urllib.parse.urlparse(final_url).path == f"/lab/tree/{QUICKSTART}"
    _, body, _ = _get(f"{base}/lab/api/settings/{WIDGETS_PLUGIN}", token)
    assert _setting_default(body, "saveState") is True
    _, body, _ = _get(f"{base}/lab/api/settings/{NEWS_PLUGIN}", token)
    assert _setting_default(body, "fetchNews") == LAB_OVERRIDES[NEWS_PLUGIN]["fetchNews"]

    assert _server_env(runtime_dir)["COMFYUI_URL"] == sim_url

    _post(f"{base}/api/shutdown", token)
    proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_console_script_help_lists_the_subcommands():
    out = subprocess.run(
        [CONSOLE_SCRIPT, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("lab", "run", "sim"):
        assert command in out


def test_bundled_notebooks_are_copied_without_overwriting_edits(tmp_path):
    from comfy_widgets.lab import copy_notebooks

    target = tmp_path / "work"
    target.mkdir()
    (target / QUICKSTART).write_text("my edits")
    copied = copy_notebooks(target)
    names = sorted(p.name for p in copied)
    assert names == ["02_parameter_sweep.ipynb", "03_compare_batches.ipynb"]
    assert (target / QUICKSTART).read_text() == "my edits"
    assert json.loads((target / "02_parameter_sweep.ipynb").read_text())["cells"]


def test_notebooks_dir_prefers_a_folder_holding_the_quickstart(tmp_path, monkeypatch):
    from comfy_widgets import lab

    monkeypatch.setattr(lab, "__file__", str(tmp_path / "site" / "comfy_widgets" / "lab.py"))
    assert lab.notebooks_dir(tmp_path) == tmp_path / lab.WORKING_FOLDER  # copied there
    assert (tmp_path / lab.WORKING_FOLDER / QUICKSTART).is_file()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / QUICKSTART).write_text("{}")
    assert lab.notebooks_dir(tmp_path) == tmp_path / "notebooks"  # a checkout
