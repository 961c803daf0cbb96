"""Live views that leave a static twin behind: what exports, GitHub and reopened notebooks show.

Why a second output, and not a ``text/html`` entry in the widget's own bundle:

- nbconvert's HTML exporter renders ONE mime type per output, the first of
  ``display_data_priority`` (``application/vnd.jupyter.widget-view+json`` comes first) that its
  ``WidgetsDataTypeFilter`` accepts; it accepts the widget view whenever the model id is in the
  notebook's saved widget state, and the view then needs the html-manager from a CDN (blank
  offline). JupyterLab's widget manager saves the state of every model whose comm is live, so a
  widget still alive at save time always wins over its own ``text/html``.
- JupyterLab ranks the widget renderer first too. With a fresh kernel it restores saved models
  with their comm dead: every ipywidgets control gets ``jupyter-widgets-disconnected`` (the red
  icon), and a model missing from the saved state shows "Error displaying widget: model not found"
  (a notebook saved again after reopening loses the state of those dead models).

So a live view is displayed as two outputs: the widget (widget view + ``text/plain``), then its
twin (``text/html`` with inline styles and thumbnails as data URIs), rewritten through a display
id whenever the view's status moves on. The twin carries a small style sheet (JupyterLab renders
a trusted ``text/html`` output without sanitizing it, and nbconvert copies it as is) that hides
the twin while the widget next to it is connected, and hides the widget's output while it is not
(dead comm, "Loading widget…", "Error displaying widget", or never rendered as in an export). The
widget marks its root element with ``cw-live``; ipywidgets adds ``jupyter-widgets-disconnected``
to that same element when its comm is gone.
"""

from __future__ import annotations

from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LIVE_CLASS = "cw-live"
TWIN_CLASS = "cw-twin"

_CONNECTED = f".{LIVE_CLASS}:not(.jupyter-widgets-disconnected)"
# One output's element: JupyterLab / Notebook 7 / nbconvert's lab template, and nbconvert's
# classic template.
_OUTPUTS = (".jp-OutputArea-child", ".output_area")


def _rules(output: str) -> str:
    return (
        f"{output}:has({_CONNECTED}) + {output}:has(.{TWIN_CLASS}){{display:none}}"
        f"{output}:has(+ {output} .{TWIN_CLASS}):not(:has({_CONNECTED})){{display:none}}"
    )


TWIN_STYLE = "<style>" + "".join(_rules(output) for output in _OUTPUTS) + "</style>"


def twin_html(body: str) -> str:
    """``body`` wrapped as a twin: the hiding rules, then the static content."""
    return f'{TWIN_STYLE}<div class="{TWIN_CLASS}">{body}</div>'


def widget_only(bundle: dict[str, Any]) -> dict[str, Any]:
    """The widget's own output: its view and a one-line text, no HTML (the twin has that)."""
    return {k: v for k, v in bundle.items() if k in (WIDGET_VIEW, "text/plain")}


class StaticTwin:
    """Mixin for a widget: display it followed by its static twin, and keep the twin current.

    The class defines ``static_html()`` (self-contained HTML of the current state),
    ``twin_text()`` (one line) and ``fallback_status()`` (the state whose change warrants a
    new twin); it calls ``_refresh_static_output()`` after each change. ``add_class`` comes from
    ipywidgets (the widget's root element gets ``cw-live``).
    """

    _twin_handle: Any = None
    _static_status: str | None = None

    def fallback_status(self) -> str:
        raise NotImplementedError

    def static_html(self) -> str:
        raise NotImplementedError

    def twin_text(self) -> str:
        raise NotImplementedError

    def twin_bundle(self) -> dict[str, str]:
        """The twin's output: the static HTML (hidden next to a connected widget) and text."""
        return {"text/html": twin_html(self.static_html()), "text/plain": self.twin_text()}

    def _ipython_display_(self) -> None:
        """Display the widget, then its twin with a display id so it can be rewritten later."""
        from IPython.display import display

        bundle = super()._repr_mimebundle_()  # type: ignore[misc]  # the widget's own bundle
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        display({**widget_only(data), "text/plain": self.twin_text()}, metadata=metadata, raw=True)
        self._static_status = self.fallback_status()
        self._twin_handle = display(self.twin_bundle(), raw=True, display_id=True)

    def _refresh_static_output(self, force: bool = False) -> None:
        """Rewrite the twin when the status moved on since it was last written (or ``force``)."""
        if self._twin_handle is None:
            return
        status = self.fallback_status()
        if not force and self._static_status == status:
            return
        self._static_status = status
        self._twin_handle.update(self.twin_bundle(), raw=True)


# The old name, for code written against it.
RefreshedFallback = StaticTwin
