"""Launch JupyterLab on the quickstart notebook, against the simulator unless COMFYUI_URL is set.

Widget-state saving is switched on (and the first-run news popup off) through a per-launch
``overrides.json``, which changes JupyterLab's defaults without touching the user's own settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from importlib.resources import files
from pathlib import Path

QUICKSTART = "01_quickstart.ipynb"
WORKING_FOLDER = "comfy_widgets_notebooks"

LAB_OVERRIDES: dict[str, dict] = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def default_app_settings_dir() -> Path:
    """JupyterLab's own app settings folder, whose files a launch copies before adding overrides."""
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "settings"


def write_settings_overrides(app_settings_dir: Path, base: Path | None = None) -> Path:
    """Write ``overrides.json`` with our defaults into app_settings_dir, keeping base's files.

    Files of ``base`` (normally JupyterLab's app settings folder) are copied first and an existing
    ``overrides.json`` there is merged, so site-wide settings stay in force.
    """
    app_settings_dir = Path(app_settings_dir)
    app_settings_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict] = {}
    if base is not None and base.is_dir():
        shutil.copytree(base, app_settings_dir, dirs_exist_ok=True)
        existing = app_settings_dir / "overrides.json"
        if existing.is_file():
            overrides = json.loads(existing.read_text(encoding="utf-8"))
    for plugin, values in LAB_OVERRIDES.items():
        overrides[plugin] = {**overrides.get(plugin, {}), **values}
    target = app_settings_dir / "overrides.json"
    target.write_text(json.dumps(overrides, indent=2), encoding="utf-8")
    return target


def notebooks_dir(workdir: Path | None = None) -> Path:
    """The folder to open, the first that holds the quickstart notebook.

    The checkout's ``notebooks/`` (editable install), ``<workdir>/notebooks`` (a checkout with a
    normal install), ``<workdir>`` itself; else the notebooks a wheel carries as package data
    (``comfy_widgets/notebooks``, a link to the top-level ``notebooks/`` in the repository) are
    copied into ``<workdir>/comfy_widgets_notebooks``, so edits live outside site-packages.
    ``workdir`` defaults to the current directory.
    """
    workdir = workdir or Path.cwd()
    candidates = (Path(__file__).resolve().parents[1] / "notebooks", workdir / "notebooks", workdir)
    for folder in candidates:
        if (folder / QUICKSTART).is_file():
            return folder
    target = workdir / WORKING_FOLDER
    copy_notebooks(target)
    return target


def copy_notebooks(target: Path) -> list[Path]:
    """Copy the bundled notebooks into target, keeping files already there; return the copies."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for item in (files("comfy_widgets") / "notebooks").iterdir():
        destination = target / item.name
        if item.name.endswith(".ipynb") and not destination.exists():
            destination.write_bytes(item.read_bytes())
            copied.append(destination)
    return copied


def lab_argv(
    root_dir: Path,
    app_settings_dir: Path,
    *,
    port: int = 8888,
    open_browser: bool = True,
) -> list[str]:
    """The JupyterLab command line: serve root_dir on loopback, opening the quickstart if there."""
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={root_dir}",
        f"--ServerApp.open_browser={open_browser}",
        f"--LabApp.app_settings_dir={app_settings_dir}",
    ]
    if (Path(root_dir) / QUICKSTART).is_file():
        argv.append(f"--LabApp.default_url=/lab/tree/{QUICKSTART}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # without it JupyterLab exits at once when run as root
    return argv


def launch(port: int = 8888, open_browser: bool = True, root_dir: Path | None = None) -> int:
    """Run JupyterLab until it exits; start the simulator first when COMFYUI_URL is unset."""
    env = dict(os.environ)
    with ExitStack() as stack:
        if not env.get("COMFYUI_URL"):
            from comfy_widgets import sim

            server = sim.serve(port=0)
            stack.callback(server.stop)
            env["COMFYUI_URL"] = server.url
            print(f"comfy-widgets: simulated ComfyUI at {server.url}", flush=True)
        settings = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cw-lab-")))
        write_settings_overrides(settings, default_app_settings_dir())
        argv = lab_argv(root_dir or notebooks_dir(), settings, port=port, open_browser=open_browser)
        return _wait(subprocess.Popen(argv, env=env))


def _wait(proc: subprocess.Popen) -> int:
    """Wait for JupyterLab to exit; Ctrl+C goes to it too, and it asks before shutting down."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue
