"""The widgets' JavaScript and CSS, read from the package with importlib.resources.

``js/`` at the top of the repository is the source; ``comfy_widgets/static`` is a symlink to it,
which setuptools follows, so the files ship inside the wheel and the sdist, and an editable
install reads ``js/`` itself through the link.
"""

from __future__ import annotations

from importlib.resources import files


def asset(name: str) -> str:
    """The text of ``static/<name>`` (e.g. ``"progress.js"``); FileNotFoundError names it."""
    resource = files("comfy_widgets") / "static" / name
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"comfy_widgets/static/{name} is missing from the installed package; "
            "reinstall comfy_widgets (the build copies js/ into comfy_widgets/static)"
        ) from None
