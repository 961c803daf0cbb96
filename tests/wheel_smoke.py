"""Import-and-render smoke test of an INSTALLED comfy_widgets (a wheel in a fresh venv).

tests/run.sh builds the wheel, installs it into a new venv and runs this file from a folder
outside the checkout, so ``import comfy_widgets`` can only find the installed copy. It uses the
public API only (``import comfy_widgets as cw``), so moving modules inside the package does not
break it. Exits non-zero with the failed assertion on any problem.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import comfy_widgets as cw

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def check_installed_copy() -> None:
    """The package comes from site-packages, not from a checkout."""
    where = Path(cw.__file__).resolve()
    assert "site-packages" in where.parts, f"comfy_widgets imported from {where}, not the install"
    assert (where.parent / "py.typed").is_file(), "py.typed is missing from the wheel"


def check_assets(widget: object, name: str) -> None:
    """The widget carries its JavaScript (with a render function) and CSS from the package."""
    esm, css = widget._esm, widget._css  # type: ignore[attr-defined]
    assert isinstance(esm, str) and "render" in esm, f"{name}: _esm missing or without render"
    assert isinstance(css, str) and css.strip(), f"{name}: _css is empty"


def bundle_of(obj: object) -> dict:
    """The display data of obj as Jupyter would ask for it."""
    bundle = obj._repr_mimebundle_()  # type: ignore[attr-defined]
    return bundle[0] if isinstance(bundle, tuple) else bundle


def main() -> int:
    check_installed_copy()
    wf = cw.Workflow.load(cw.examples.path("empty_image_api.json"))
    with cw.sim.serve(port=0, seconds_per_step=0.0) as server:
        with cw.connect(server.url) as client:
            job = client.run(wf)
            job.result(timeout=60)
            check_assets(cw.ProgressView(job), "ProgressView")
            data = bundle_of(job)
            assert WIDGET_VIEW in data, f"a finished job shows no widget view: {sorted(data)}"
            assert "<img" in data.get("text/html", ""), "the job's HTML fallback has no <img"

            batch = client.batch(wf, count=4)
            frame = batch.result(timeout=120)
            assert len(frame) == 4, f"expected 4 rows, got {len(frame)}"
            view = cw.BatchView(batch)
            check_assets(view, "BatchView")
            grid = cw.ResultGrid(frame)
            check_assets(grid, "ResultGrid")
            assert grid.total == 4, f"the grid shows {grid.total} cells, not 4"
            assert WIDGET_VIEW in bundle_of(grid), "ResultGrid has no widget view"

    with tempfile.TemporaryDirectory() as folder:
        from comfy_widgets import lab

        opened = lab.notebooks_dir(Path(folder))
        assert (opened / lab.QUICKSTART).is_file(), f"no quickstart copied into {opened}"
    print(f"wheel smoke test passed ({Path(cw.__file__).parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
