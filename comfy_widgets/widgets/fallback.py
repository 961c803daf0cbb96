"""Live views whose saved static HTML follows them to the end.

A widget's ``text/html`` fallback is what GitHub, nbviewer and HTML exports show. It is captured
when the view is displayed, so a view shown at "queued" would be saved at "queued". These views
are displayed with a display id and rewrite their output whenever their status changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class RefreshedFallback:
    """Mixin for an anywidget view: display with a display id, refresh it on status changes.

    The view defines ``fallback_status()`` (the state whose change warrants a new fallback) and
    a ``_repr_mimebundle_`` that includes ``text/html``; it calls ``_refresh_static_output()``
    after each change.
    """

    _display_handle: Any = None
    if TYPE_CHECKING:  # provided by the view the mixin is combined with

        def _repr_mimebundle_(
            self, **kwargs: Any
        ) -> tuple[dict[str, Any], dict[str, Any]] | None: ...

    _static_status: str = ""

    def fallback_status(self) -> str:
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        """Display with a display id, so the static HTML can be rewritten later."""
        from IPython.display import display

        data, metadata = self._repr_mimebundle_() or ({}, {})
        self._static_status = self.fallback_status()
        self._display_handle = display(data, metadata=metadata, raw=True, display_id=True)

    def _refresh_static_output(self) -> None:
        """Rewrite the displayed output when the status moved on since it was last written."""
        status = self.fallback_status()
        if self._display_handle is None or self._static_status == status:
            return
        self._static_status = status
        data, metadata = self._repr_mimebundle_() or ({}, {})
        self._display_handle.update(data, metadata=metadata, raw=True)
