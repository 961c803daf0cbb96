"""Optional dependencies: a missing extra is named in the error, and the core never needs one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from comfy_widgets import cli, extras
from comfy_widgets.errors import ComfyWidgetsError


def test_require_names_the_extra_and_the_missing_package(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "sim", ("aiohttp", "no_such_module_cw"))
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("sim", "the simulator")
    assert isinstance(info.value, ComfyWidgetsError) and isinstance(info.value, ImportError)
    assert info.value.extra == "sim" and info.value.missing == ["no_such_module_cw"]
    assert "pip install 'comfy_widgets[sim]'" in str(info.value)
    assert "no_such_module_cw" in str(info.value)


def test_require_passes_when_installed():
    extras.require("sim", "the simulator")  # aiohttp is installed with the test extra


@pytest.mark.parametrize(
    ("argv", "extra"), [(["lab", "--no-browser"], "lab"), (["run", "empty_image_api"], "cli")]
)
def test_cli_reports_a_missing_extra(monkeypatch, capsys, argv, extra):
    monkeypatch.setitem(extras.EXTRAS, extra, ("no_such_module_cw",))
    assert cli.main(argv) == 2
    assert f"pip install 'comfy_widgets[{extra}]'" in capsys.readouterr().err


def test_the_core_imports_no_optional_dependency():
    code = (
        "import sys, comfy_widgets as cw\n"
        "wf = cw.Workflow.load(cw.examples.path('sd15_txt2img'))\n"
        "assert wf.parameters()\n"
        "cw.ProgressView, cw.ResultGrid, cw.BatchView, cw.connect\n"
        "print(sorted(m for m in ('aiohttp', 'tqdm', 'jupyterlab') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
