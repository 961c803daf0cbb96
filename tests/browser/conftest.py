"""Fixtures for the browser suite: one JupyterLab server and one headless Chromium per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.jlab import CHROMIUM, CHROMIUM_ARGS, LabServer, start_lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory) -> LabServer:
    """JupyterLab on a free loopback port, fresh settings; notebooks start their own simulator."""
    work = tmp_path_factory.mktemp("jupyterlab")
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_URL"}
    env["COMFY_WIDGETS_HOME"] = str(work / "comfy_widgets_home")
    server = start_lab(work, env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (never `playwright install`)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, lab_server):
    """A fresh browser page in its own context, 1280x900; its kernels are stopped afterwards."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
    lab_server.shutdown_kernels()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and exports (gitignored: test-artifacts/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


BROWSER_TIMEOUT_S = 900  # the first test also pays for starting JupyterLab and Chromium


def pytest_collection_modifyitems(items):
    """Raise pytest-timeout's default (300 s, pyproject.toml) for the browser tests."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BROWSER_TIMEOUT_S))
