"""The real ComfyUI frontend (PyPI `comfyui-frontend-package`) as an oracle in headless Chromium.

The simulator serves the frontend's static files (`--front-end-root`) and a chosen /object_info;
no real ComfyUI runs. One page is opened and reused; each call starts from a fresh graph.

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        with FrontendOracle(browser, object_info_file=OBJECT_INFO_0270) as fe:
            prompt = fe.to_prompt(ui_workflow)      # app.loadGraphData + app.graphToPrompt
            queued = fe.load_png(png_bytes)         # dropped on the canvas, then Queue pressed
            resaved = fe.save(ui_workflow)          # app.graph.serialize() right after loading

`to_prompt` is exactly how `shared/workflows/frontend-1.58/expected/` was made: the workflow's
JSON text is parsed in the page, `app.loadGraphData(wf, true, true, name, {no dialogs})`, then
`app.graphToPrompt()`, and the output is `JSON.stringify(p.output, null, 2)` (`*_text` methods
return that text, so key order and number formatting are the frontend's).

Nothing the page does leaves the machine: requests to any other origin are aborted, and a
queued prompt is captured in the browser and answered there, never reaching the simulator.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx

from comfy_widgets import sim
from comfy_widgets.sim.frontend import package_root
from tests.shared_data import REFERENCE

OBJECT_INFO_0270 = REFERENCE / "object_info_0.27.0.json.gz"
BOOT_TIMEOUT_MS = 60_000
CALL_TIMEOUT_MS = 60_000
LEGACY_SETTLE_MS = 2000  # after startup of a frontend without a startup trace
RELOAD_EVERY = 50  # the goldens' driver reloaded the page every 50 workflows, so do we
# Right after a load the frontend remounts its canvas (hash navigation) for a moment; a load
# in that window throws this, and is retried after a pause (loading is idempotent).
CANVAS_RACE = "getCanvas: canvas is null"
RACE_RETRIES = 20
RACE_PAUSE_S = 0.25

# The options the goldens were made with: no missing-node or missing-model dialogs.
_LOAD_JS = """
async ([text, name]) => {
  const app = window.comfyAPI.app.app;
  const wf = JSON.parse(text);
  await app.loadGraphData(wf, true, true, name,
    {showMissingNodesDialog: false, showMissingModelsDialog: false});
  return true;
}
"""
_PROMPT_JS = """
async () => {
  const p = await window.comfyAPI.app.app.graphToPrompt();
  return JSON.stringify(p.output, null, 2);
}
"""
_SERIALIZE_JS = "() => JSON.stringify(window.comfyAPI.app.app.graph.serialize(), null, 2)"
_HANDLE_FILE_JS = """
async ([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new File([bytes], name, {type});
  await window.comfyAPI.app.app.handleFile(file);
  return true;
}
"""
# What the Queue button does: app.queuePrompt(number, batchCount), here captured in the page.
_QUEUE_JS = """
async () => {
  window.__oracleQueued = [];
  await window.comfyAPI.app.app.queuePrompt(0, 1);
  const deadline = Date.now() + 10000;
  while (window.__oracleQueued.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return window.__oracleQueued.length ? window.__oracleQueued[0] : null;
}
"""
# Every node class of the served object_info, plus the frontend's own notes, once registered.
_MISSING_TYPES_JS = """
async () => {
  const info = await (await fetch('/api/object_info')).json();
  const known = window.LiteGraph.registered_node_types;
  return [...Object.keys(info), 'Note', 'MarkdownNote', 'PrimitiveNode', 'Reroute']
    .filter((name) => !(name in known));
}
"""
# Set the startup-trace switch, and notice the trace: the end of the frontend's startup.
_BOOT_SIGNAL_INIT = """
(() => {
  localStorage.setItem('DEBUG_PERF', 'true');
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    if (typeof args[0] === 'string' && args[0].startsWith('[Bootstrap] Startup trace')) {
      window.__oracleBooted = true;
    }
    warn(...args);
  };
})();
"""
# Answer POST /api/prompt in the page (nothing is run) and keep the request body.
_CAPTURE_QUEUE_INIT = """
(() => {
  window.__oracleQueued = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input.url;
    const method = (init && init.method) || (typeof input === 'string' ? 'GET' : input.method);
    if (method === 'POST' && /\\/prompt(\\?|$)/.test(new URL(url, location.href).pathname)) {
      window.__oracleQueued.push(init.body);
      const body = JSON.stringify({prompt_id: 'oracle', number: 0, node_errors: {}});
      return new Response(body, {status: 200, headers: {'Content-Type': 'application/json'}});
    }
    return realFetch(input, init);
  };
})();
"""


def _reports_startup(root: Path) -> bool:
    """Whether this frontend logs its startup trace (1.58 does, 1.27 does not)."""
    return any(b"[Bootstrap] Startup trace" in f.read_bytes() for f in root.glob("assets/app-*.js"))


class FrontendError(RuntimeError):
    """The frontend threw or did not answer while converting (the message is the page's)."""


class FrontendOracle:
    """A simulator serving the real frontend, and one Chromium page on it."""

    def __init__(
        self,
        browser: Any,
        *,
        object_info_file: str | Path = OBJECT_INFO_0270,
        front_end_root: str | Path | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.browser = browser
        self.object_info_file = Path(object_info_file)
        self.front_end_root = Path(front_end_root) if front_end_root else package_root()
        self.settings = settings or {}
        self.console: list[str] = []
        self.blocked: list[str] = []
        self._handle: Any = None
        self._context: Any = None
        self.page: Any = None
        self._calls = 0
        self._startup_trace = _reports_startup(self.front_end_root)

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> FrontendOracle:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the simulator and open the frontend in a new browser context."""
        self._handle = sim.serve(
            front_end_root=self.front_end_root, object_info_file=self.object_info_file
        )
        if self.settings:
            httpx.post(
                self._handle.url + "/settings", json=self.settings, timeout=10
            ).raise_for_status()
        self._context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        self._context.route("**/*", self._route)
        self._context.add_init_script(_CAPTURE_QUEUE_INIT)
        self._context.add_init_script(_BOOT_SIGNAL_INIT)
        self.page = self._context.new_page()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.set_default_timeout(CALL_TIMEOUT_MS)
        self.reload()

    def stop(self) -> None:
        """Close the page and stop the simulator."""
        if self._context is not None:
            self._context.close()
            self._context = None
        if self._handle is not None:
            self._handle.stop()
            self._handle = None

    @property
    def url(self) -> str:
        """The simulator's base URL."""
        return self._handle.url

    def _route(self, route: Any) -> None:
        """Let only this simulator's origin through."""
        if route.request.url.startswith(self.url + "/") or route.request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def reload(self) -> None:
        """(Re)load the page and wait until the frontend's startup has completed.

        Newer frontends report the end of their startup (node definitions registered,
        extensions set up, the first workflow loaded) in a console line when
        localStorage.DEBUG_PERF is set; a workflow loaded before then can meet unregistered
        node types. Older ones (1.27) do not: there, every node type registered, the app
        published as `window.app` and a settle pause stand for it.
        """
        self.page.goto(self.url + "/", wait_until="domcontentloaded")
        if self._startup_trace:
            self.page.wait_for_function(
                "() => window.__oracleBooted === true", timeout=BOOT_TIMEOUT_MS
            )
        else:
            self.page.wait_for_function(
                "() => window.app && window.graph && window.app.canvas", timeout=BOOT_TIMEOUT_MS
            )
        deadline = time.monotonic() + BOOT_TIMEOUT_MS / 1000
        while missing := self.page.evaluate(_MISSING_TYPES_JS):
            if time.monotonic() > deadline:
                raise FrontendError(f"the frontend registered no node type for {missing[:10]}")
            self.page.wait_for_timeout(100)
        if not self._startup_trace:
            self.page.wait_for_timeout(LEGACY_SETTLE_MS)
        self.page.keyboard.press("Escape")  # the first-run template dialog
        self._calls = 0

    def use_object_info(self, path: str | Path | None) -> None:
        """Serve this /object_info file (None: the simulator's own) and reload if it changed."""
        wanted = Path(path) if path is not None else None
        if self._handle.settings.object_info_file != wanted:
            self._handle.settings.object_info_file = wanted
            self.reload()

    def version(self) -> str:
        """The frontend's own version string."""
        return self.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")

    # -- conversions ----------------------------------------------------------------------
    def _tick(self) -> None:
        self._calls += 1
        if self._calls > RELOAD_EVERY:
            self.reload()
            self._calls = 1

    def _call(self, script: str, arg: Any = None) -> Any:
        try:
            return self.page.evaluate(script, arg)
        except Exception as ex:  # noqa: BLE001 - playwright.Error; keep the page's message
            raise FrontendError(str(ex).splitlines()[0]) from ex

    def load(self, workflow: dict[str, Any] | str, name: str = "workflow") -> None:
        """`app.loadGraphData` on a fresh graph (the JSON text is parsed in the page)."""
        self._tick()
        text = workflow if isinstance(workflow, str) else json.dumps(workflow)
        self._retry_race(_LOAD_JS, [text, name])

    def _retry_race(self, script: str, arg: Any) -> Any:
        """Run a loading script, retrying while the canvas is being remounted."""
        for _ in range(RACE_RETRIES):
            try:
                return self._call(script, arg)
            except FrontendError as ex:
                if CANVAS_RACE not in str(ex):
                    raise
                self.page.wait_for_timeout(RACE_PAUSE_S * 1000)
        return self._call(script, arg)

    def to_prompt_text(self, workflow: dict[str, Any] | str, name: str = "workflow") -> str:
        """`JSON.stringify(p.output, null, 2)` of `app.graphToPrompt()` after loading."""
        self.load(workflow, name)
        return self._call(_PROMPT_JS)

    def to_prompt(self, workflow: dict[str, Any] | str, name: str = "workflow") -> dict[str, Any]:
        """The API prompt the frontend makes of a UI workflow."""
        return json.loads(self.to_prompt_text(workflow, name))

    def save_text(self, workflow: dict[str, Any] | str, name: str = "workflow") -> str:
        """`app.graph.serialize()` right after loading, as JSON text."""
        self.load(workflow, name)
        return self._call(_SERIALIZE_JS)

    def save(self, workflow: dict[str, Any] | str, name: str = "workflow") -> dict[str, Any]:
        """The workflow as this frontend re-saves it."""
        return json.loads(self.save_text(workflow, name))

    def load_file(self, data: bytes, name: str, mime: str) -> None:
        """`app.handleFile(file)`: what dropping the file on the canvas does."""
        self._tick()
        self._retry_race(_HANDLE_FILE_JS, [base64.b64encode(data).decode("ascii"), name, mime])

    def queue(self) -> dict[str, Any]:
        """Press Queue (`app.queuePrompt(0, 1)`): the POST /prompt body, captured in the page."""
        body = self._call(_QUEUE_JS)
        if body is None:
            raise FrontendError("the frontend queued nothing: " + self.last_console())
        return json.loads(body)

    def load_png(self, png: bytes, name: str = "image.png") -> dict[str, Any]:
        """The API prompt the frontend queues after the PNG is dropped on the canvas."""
        self.load_file(png, name, "image/png")
        return self.queue()["prompt"]

    def last_console(self, n: int = 5) -> str:
        """The page's last console lines (for error messages)."""
        return " | ".join(self.console[-n:])
