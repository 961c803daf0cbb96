"""Drive a real JupyterLab for the browser tests: start a server, open notebooks, run, theme, save.

The server runs on a free loopback port with fresh settings and workspace folders, the widget
manager's saveState on and the news popup off (the same overrides.json `comfy-widgets lab` writes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat

from comfy_widgets.lab import lab_argv, write_settings_overrides

TOKEN = "cw-browser-test"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DARK = "JupyterLab Dark"
LIGHT = "JupyterLab Light"


@dataclass
class LabServer:
    """A running JupyterLab process serving root_dir on 127.0.0.1:port."""

    proc: subprocess.Popen
    port: int
    root_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The address that opens notebook (relative to root_dir) with a clean workspace."""
        return f"{self.base_url}/lab/tree/{notebook}?token={TOKEN}&reset"

    def shutdown_kernels(self) -> None:
        """Stop every running kernel (each notebook test leaves one, with its own simulator)."""
        for kernel in json.loads(_request(f"{self.base_url}/api/kernels")):
            _request(f"{self.base_url}/api/kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        """Shut the server (and its kernels) down, falling back to SIGTERM on its process group."""
        try:
            _request(f"{self.base_url}/api/shutdown", method="POST")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)


def _request(url: str, method: str = "GET") -> bytes:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


def start_lab(work: Path, env: dict[str, str], timeout: float = 60) -> LabServer:
    """Start JupyterLab with root work/root and fresh settings under work; wait for /api/status."""
    dirs = {
        name: work / name
        for name in ("root", "user-settings", "workspaces", "app-settings", "runtime", "config")
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    write_settings_overrides(dirs["app-settings"])
    env = {
        **env,
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
    }
    argv = [  # the launcher's command line, plus what a test needs on top
        *lab_argv(dirs["root"], dirs["app-settings"], port=0, open_browser=False),
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.user_settings_dir={dirs['user-settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        "--LabApp.expose_app_in_browser=True",
    ]
    log_path = work / "jupyterlab.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}; see {log_path}")
        port = _runtime_port(dirs["runtime"], proc.pid)
        if port:
            server = LabServer(proc, port, dirs["root"])
            try:
                _request(f"{server.base_url}/api/status")
                return server
            except OSError:
                pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise TimeoutError(f"jupyter lab did not answer within {timeout} s; see {log_path}")


def _runtime_port(runtime_dir: Path, pid: int) -> int | None:
    """The port the server wrote into its runtime file (it binds port 0, so the OS chose it)."""
    info = runtime_dir / f"jpserver-{pid}.json"
    try:
        return int(json.loads(info.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None


def write_notebook(path: Path, sources: list[str]) -> Path:
    """Write a notebook of code cells with a kernelspec (so no kernel-picker dialog appears)."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def open_notebook(page, server: LabServer, notebook: str) -> None:
    """Open notebook in JupyterLab and wait until its kernel is idle."""
    page.goto(server.url(notebook))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.status === 'idle'",
        timeout=60_000,
    )


def run_all(page, timeout: float = 120) -> None:
    """Run every cell and wait until all have an execution count and the kernel is idle."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    wait_executed(page, timeout)


def wait_executed(page, timeout: float = 120) -> None:
    """Wait until every code cell shows an execution count and the kernel is idle again."""
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp.shell.currentWidget;
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0
                && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()))
                && w.sessionContext.session.kernel.status === 'idle';
        }""",
        timeout=timeout * 1000,
    )


def run_cell(page, index: int, timeout: float = 120) -> None:
    """Run one code cell and wait until it shows an execution count and the kernel is idle."""
    page.evaluate(
        "(i) => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " nb.widgets[i].model.sharedModel.execution_count = null;"
        " nb.activeCellIndex = i;"
        " return window.jupyterapp.commands.execute('notebook:run-cell'); }",
        index,
    )
    page.wait_for_function(
        """(i) => {
            const w = window.jupyterapp.shell.currentWidget;
            const prompt = w.content.widgets[i].node.querySelector('.jp-InputArea-prompt');
            return /^\\[\\d+\\]:$/.test(prompt.textContent.trim())
                && w.sessionContext.session.kernel.status === 'idle';
        }""",
        arg=index,
        timeout=timeout * 1000,
    )


def cell_errors(page) -> list[str]:
    """Every error output of the open notebook, as 'ename: evalue'."""
    return page.evaluate(
        """() => {
            const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
            const errors = [];
            for (let i = 0; i < cells.length; i++) {
                const cell = cells.get(i);
                if (cell.type !== 'code') continue;
                for (const out of cell.outputs.toJSON()) {
                    if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}`);
                }
            }
            return errors;
        }"""
    )


def widget_failures(page) -> list[str]:
    """Texts JupyterLab shows when a widget view cannot be rendered."""
    text = page.inner_text("body")
    return [m for m in ("Loading widget", "Error displaying widget") if m in text]


def set_theme(page, theme: str) -> None:
    """Switch JupyterLab's theme and wait until the page has restyled."""
    page.evaluate(
        "(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme
    )
    page.wait_for_function(
        "(t) => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000
    )
    page.wait_for_timeout(500)


def hide_sidebar(page) -> None:
    """Collapse the left area so screenshots show the notebook only."""
    page.evaluate(
        "() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }"
    )


def save_notebook(page, path: Path, timeout: float = 30) -> dict:
    """Save the open notebook and return it as read back from disk once its mtime changed."""
    before = path.stat().st_mtime_ns
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.monotonic() + timeout
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not saved")
        time.sleep(0.1)
    return json.loads(path.read_text(encoding="utf-8"))


def kernel_message(payload: bytes | str) -> dict | None:
    """Decode one kernel websocket frame (JSON text, or the v1 binary protocol) to a message."""
    if isinstance(payload, str):
        return json.loads(payload)
    count = int.from_bytes(payload[:8], "little")
    offsets = [int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [payload[a:b] for a, b in zip(offsets, [*offsets[1:], len(payload)], strict=True)]
    if len(parts) < 6:
        return None
    header, parent, metadata, content = (json.loads(p) for p in parts[1:5])
    return {
        "channel": parts[0].decode(),
        "header": header,
        "parent_header": parent,
        "metadata": metadata,
        "content": content,
        "buffers": parts[5:],
    }


class CommRecorder:
    """Collects the widget comm messages the kernel sends to the page, from its websockets."""

    def __init__(self, page) -> None:
        self.messages: list[dict] = []
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws) -> None:
        if "/channels" in ws.url:
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        msg = kernel_message(payload)
        if msg and msg["header"].get("msg_type") in ("comm_open", "comm_msg"):
            self.messages.append(msg)

    def comm_ids(self, anywidget_id_part: str) -> set[str]:
        """Comm ids of opened anywidget models whose ``_anywidget_id`` contains the given text."""
        return {
            m["content"]["comm_id"]
            for m in self.messages
            if m["header"]["msg_type"] == "comm_open"
            and anywidget_id_part
            in str(m["content"].get("data", {}).get("state", {}).get("_anywidget_id", ""))
        }

    def updates(self, comm_ids: set[str]) -> list[dict]:
        """The comm_msg messages sent to the given comms."""
        return [
            m
            for m in self.messages
            if m["header"]["msg_type"] == "comm_msg" and m["content"]["comm_id"] in comm_ids
        ]
