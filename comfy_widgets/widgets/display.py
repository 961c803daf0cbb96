"""How Jobs and Batches show in IPython: the live widgets, registered from above.

The engine does not import widgets: ``Job`` and ``Batch`` only carry a static ``_repr_html_``.
``comfy_widgets/__init__.py`` (the facade, above every layer) registers IPython display
formatters for them by type name; those import this module on first use, which builds the
live view: the progress widget for a Job, the batch view for a Batch, each with its static
HTML fallback for notebooks shown where widgets do not run.
"""

from __future__ import annotations

from typing import Any


def job_mimebundle(job: Any, include: Any = None, exclude: Any = None) -> Any:
    """The live progress widget's bundle for ``job`` (``(data, metadata)``)."""
    from comfy_widgets.widgets.progress import ProgressView

    return ProgressView(job)._repr_mimebundle_(include=include, exclude=exclude)


def show_job(job: Any) -> None:
    """Display the live progress widget, whose saved HTML is refreshed when the job ends."""
    from comfy_widgets.widgets.progress import ProgressView

    ProgressView(job)._ipython_display_()


def batch_mimebundle(batch: Any, include: Any = None, exclude: Any = None) -> Any:
    """The live batch view's bundle for ``batch`` (cards, summary, Stop remaining)."""
    from comfy_widgets.widgets.batch_view import BatchView

    return BatchView(batch)._repr_mimebundle_(include=include, exclude=exclude)
