"""The committed notebooks: clean (no outputs, a kernelspec) and runnable against COMFYUI_URL.

nbval (`pytest notebooks --nbval-lax`) runs them with COMFYUI_URL unset, where each starts its own
simulator; here the quickstart runs against a server given through COMFYUI_URL instead.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from comfy_widgets import sim

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_parameter_sweep.ipynb", "03_compare_batches.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    first = code[0].source
    assert "COMFYUI_URL" in first and "cw.sim.serve()" in first


def test_notebooks_folder_holds_only_the_notebooks():
    """The user's folder has no test machinery in it (nbval's plugin is tests/nbval_home.py)."""
    assert sorted(p.name for p in NOTEBOOKS.iterdir() if not p.name.startswith(".")) == NAMES


def _errors(nb) -> list[str]:
    return [
        f"{o.ename}: {o.evalue}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


def test_quickstart_runs_against_comfyui_url(tmp_path, monkeypatch):
    with sim.serve(seconds_per_step=0.01) as server:
        monkeypatch.setenv("COMFYUI_URL", server.url)
        path = Path(shutil.copy(NOTEBOOKS / NAMES[0], tmp_path))
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        with urllib.request.urlopen(f"{server.url}/history", timeout=10) as resp:
            history = json.load(resp)
    assert _errors(nb) == []
    assert server.url in nb.cells[1].outputs[0]["data"]["text/plain"]
    assert len(history) == 1, "the quickstart's run went to the server in COMFYUI_URL"
    (prompt,) = history.values()
    assert prompt["status"]["status_str"] == "success"
    pngs = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert pngs, "the result image is in the notebook as a static PNG"
