"""The static twin: what a live view leaves behind for exports, GitHub and reopened notebooks."""

from __future__ import annotations

from comfy_widgets.widgets.fallback import (
    LIVE_CLASS,
    TWIN_CLASS,
    WIDGET_VIEW,
    StaticTwin,
    twin_html,
    widget_only,
)


def test_twin_html_hides_itself_next_to_a_connected_widget_and_hides_a_dead_one():
    html = twin_html("<b>done</b>")
    assert html.endswith(f'<div class="{TWIN_CLASS}"><b>done</b></div>')
    connected = f".{LIVE_CLASS}:not(.jupyter-widgets-disconnected)"
    for output in (".jp-OutputArea-child", ".output_area"):
        assert f"{output}:has({connected}) + {output}:has(.{TWIN_CLASS}){{display:none}}" in html
        assert f"{output}:has(+ {output} .{TWIN_CLASS}):not(:has({connected}))" in html


def test_widget_output_keeps_only_the_view_and_text():
    bundle = {
        WIDGET_VIEW: {"model_id": "m"},
        "text/plain": "x",
        "text/html": "<b>",
        "image/png": "",
    }
    assert widget_only(bundle) == {WIDGET_VIEW: {"model_id": "m"}, "text/plain": "x"}


class Base:
    def _repr_mimebundle_(self, **_kwargs):
        return {WIDGET_VIEW: {"model_id": "m"}, "text/plain": "repr", "text/html": "<i>"}, {}


class View(StaticTwin, Base):
    status = "queued"

    def fallback_status(self) -> str:
        return self.status

    def static_html(self) -> str:
        return f"<p>{self.status}</p>"

    def twin_text(self) -> str:
        return f"view {self.status}"


def test_twin_is_displayed_after_the_widget_and_rewritten_only_when_the_status_moves(
    monkeypatch,
):
    shown, updates = [], []

    class Handle:
        def update(self, data, **_):
            updates.append(data)

    def display(data, display_id=None, **_):
        shown.append((data, display_id))
        return Handle() if display_id else None

    monkeypatch.setattr("IPython.display.display", display)
    view = View()
    view._refresh_static_output()  # not displayed yet: nothing to rewrite
    view._ipython_display_()
    (widget, widget_id), (twin, twin_id) = shown
    assert widget == {WIDGET_VIEW: {"model_id": "m"}, "text/plain": "view queued"}
    assert widget_id is None and twin_id is True
    assert "<p>queued</p>" in twin["text/html"] and twin["text/plain"] == "view queued"
    view._refresh_static_output()
    assert updates == []
    view.status = "completed"
    view._refresh_static_output()
    view._refresh_static_output()
    assert [u["text/plain"] for u in updates] == ["view completed"]
    view._refresh_static_output(force=True)
    assert len(updates) == 2
