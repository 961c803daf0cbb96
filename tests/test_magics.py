"""The IPython extension: %comfy_connect and %comfy_form in a real InteractiveShell."""

from __future__ import annotations

import shutil
import urllib.request

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from comfy_widgets import examples
from comfy_widgets.magics import ComfyMagics
from comfy_widgets.widgets.form import ParameterForm


@pytest.fixture
def shell():
    """An IPython shell with a fresh ComfyMagics registered (its state does not leak)."""
    shell = InteractiveShell.instance()
    magics = ComfyMagics(shell)
    shell.register_magics(magics)
    yield shell
    if magics.client is not None:
        magics.client.close()
    if magics.simulator is not None:
        magics.simulator.stop()


def _magics(shell) -> ComfyMagics:
    return shell.magics_manager.registry["ComfyMagics"]


def test_connect_sim_starts_a_simulator_and_returns_its_client(shell):
    client = shell.run_line_magic("comfy_connect", "sim")
    simulator = _magics(shell).simulator
    assert client.url == simulator.url
    with urllib.request.urlopen(f"{simulator.url}/system_stats", timeout=10) as resp:
        assert resp.status == 200
    assert shell.run_line_magic("comfy_connect", "sim").url == simulator.url  # one simulator


def test_connect_takes_a_url_or_comfyui_url(shell, monkeypatch):
    assert shell.run_line_magic("comfy_connect", "http://127.0.0.1:1234").url.startswith(
        "http://127.0.0.1:1234"
    )
    monkeypatch.setenv("COMFYUI_URL", "http://127.0.0.1:4321")
    assert shell.run_line_magic("comfy_connect", "").url.startswith("http://127.0.0.1:4321")


def test_form_for_an_example_uses_the_connected_client(shell):
    client = shell.run_line_magic("comfy_connect", "sim")
    form = shell.run_line_magic("comfy_form", "sd15_txt2img")
    assert isinstance(form, ParameterForm)
    assert form.client is client
    assert {"prompt", "negative_prompt", "seed", "steps", "cfg"} <= set(form.values)
    assert form.values["steps"] == 20


def test_form_for_a_file_path(shell, tmp_path):
    path = shutil.copy(examples.path("empty_image_api"), tmp_path / "my flow.json")
    shell.run_line_magic("comfy_connect", "sim")
    form = shell.run_line_magic("comfy_form", str(path))
    assert form.workflow.name == "my flow"
    assert form.values["width"] == 512


def test_form_without_connect_connects_to_comfyui_url(shell, monkeypatch):
    monkeypatch.setenv("COMFYUI_URL", "http://127.0.0.1:4321")
    form = shell.run_line_magic("comfy_form", "empty_image_api")
    assert form.client.url.startswith("http://127.0.0.1:4321")


def test_form_usage_errors(shell):
    with pytest.raises(UsageError, match="usage"):
        shell.run_line_magic("comfy_form", "")
    with pytest.raises(UsageError, match="sd15_txt2img"):
        shell.run_line_magic("comfy_form", "no/such/workflow.json")


def test_load_ext_comfy_widgets_registers_the_magics():
    shell = InteractiveShell.instance()
    shell.extension_manager.unload_extension("comfy_widgets")
    assert shell.extension_manager.load_extension("comfy_widgets") is None  # not "no load function"
    assert isinstance(shell.magics_manager.registry["ComfyMagics"], ComfyMagics)
    assert {"comfy_connect", "comfy_form"} <= set(shell.magics_manager.magics["line"])
