"""Optional dependencies: a missing one raises an error that names the extra to install.

The library itself needs only the core dependencies; the simulator (``sim``), JupyterLab
(``lab``) and the command line's progress bar (``cli``) live in extras, so each of these
entry points checks for its packages before importing them.
"""

from __future__ import annotations

import importlib.util

from comfy_widgets.errors import ComfyWidgetsError

EXTRAS: dict[str, tuple[str, ...]] = {
    "sim": ("aiohttp",),
    "lab": ("jupyterlab",),
    "cli": ("tqdm",),
}


class MissingExtraError(ComfyWidgetsError, ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""

    def __init__(self, extra: str, missing: list[str], purpose: str):
        super().__init__(
            f"{purpose} needs {', '.join(missing)}, which is not installed:"
            f" pip install 'comfy_widgets[{extra}]'"
        )
        self.extra = extra
        self.missing = missing


def require(extra: str, purpose: str) -> None:
    """Raise MissingExtraError unless every package of ``extra`` can be imported."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(extra, missing, purpose)
