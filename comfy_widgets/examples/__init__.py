"""Example workflows bundled with the package, so the quickstart and the CLI work out of the box.

``sd15_txt2img`` is ComfyUI's default SD1.5 graph in the UI format (a copy of ``default.json``
from Comfy-Org's comfyui-workflow-templates 0.2.11, MIT licence, see LICENSE-workflow-templates);
``sd15_txt2img_api`` is the same graph in the API format; ``empty_image_api`` needs no model.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the bundled example workflows (file stems)."""
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def path(name: str) -> Path:
    """The file of the bundled example called name (with or without ``.json``)."""
    candidate = FOLDER / (name if name.endswith(".json") else f"{name}.json")
    if not candidate.is_file():
        raise FileNotFoundError(f"no example workflow {name!r}; examples: {', '.join(names())}")
    return candidate
