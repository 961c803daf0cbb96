"""Test-wide fixtures: every test gets its own store folder, so no run writes into the repo."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_store_home(tmp_path, monkeypatch):
    """Point COMFY_WIDGETS_HOME at a fresh temp folder and clear COMFYUI_URL for each test."""
    home = tmp_path / "comfy_widgets_home"
    monkeypatch.setenv("COMFY_WIDGETS_HOME", str(home))
    monkeypatch.delenv("COMFYUI_URL", raising=False)
    return home


@pytest.fixture
def v2_stack(tmp_path):
    """The simulator and the real comfy-api-proxy in front of it, on loopback; stopped after."""
    from tests.v2_servers import V2Stack

    stack = V2Stack(tmp_path)
    try:
        yield stack.start()
    finally:
        stack.stop()
