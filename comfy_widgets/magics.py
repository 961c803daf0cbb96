"""IPython extension: ``%load_ext comfy_widgets`` gives ``%comfy_connect`` and ``%comfy_form``.

``%comfy_connect [URL|sim]`` connects (``$COMFYUI_URL`` by default; ``sim`` starts the simulated
server in the kernel) and returns the client; ``%comfy_form WORKFLOW`` shows the parameter form of
a workflow file (or a bundled example's name) wired to that client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class


@magics_class
class ComfyMagics(Magics):
    """The line magics; the client of the last ``%comfy_connect`` is reused by ``%comfy_form``."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.client: Any = None
        self.simulator: Any = None

    @line_magic
    def comfy_connect(self, line: str) -> Any:
        """Connect to a ComfyUI server and return the client: ``%comfy_connect [URL|sim]``."""
        return self._connect(line)

    def _connect(self, line: str) -> Any:
        """Connect (``sim`` starts the simulator once) and keep the client for ``%comfy_form``."""
        from comfy_widgets.engine.client import connect

        url = line.strip() or None
        if url == "sim":
            if self.simulator is None:
                from comfy_widgets import sim

                self.simulator = sim.serve(port=0)
            url = self.simulator.url
        self.client = connect(url)
        return self.client

    @line_magic
    def comfy_form(self, line: str) -> Any:
        """Show the parameter form of a workflow: ``%comfy_form path/to/workflow.json``."""
        from comfy_widgets import examples
        from comfy_widgets.widgets.form import ParameterForm
        from comfy_widgets.workflow.workflow import Workflow

        source = line.strip()
        if not source:
            raise UsageError("usage: %comfy_form path/to/workflow.json (or an example's name)")
        path = Path(source).expanduser()
        if not path.exists():
            try:
                path = examples.path(source)
            except FileNotFoundError as exc:
                raise UsageError(f"{source}: no such file. {exc}") from None
        if self.client is None:
            self._connect("")
        return ParameterForm(Workflow.load(path), self.client)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (called by ``%load_ext comfy_widgets`` via the package)."""
    ipython.register_magics(ComfyMagics)
