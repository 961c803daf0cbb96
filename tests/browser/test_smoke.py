"""Smoke test of the harness: an anywidget renders in real JupyterLab and clicks reach Python."""

from __future__ import annotations

import time

import pytest

from tests.browser.jlab import (
    cell_errors,
    open_notebook,
    run_all,
    run_cell,
    widget_failures,
    write_notebook,
)

pytestmark = pytest.mark.browser

COUNTER = '''
import anywidget, traitlets

class Counter(anywidget.AnyWidget):
    _esm = """
    export default { render({ model, el }) {
        const b = document.createElement('button');
        b.className = 'smoke-btn';
        const show = () => { b.textContent = `count is ${model.get('value')}`; };
        b.onclick = () => { model.set('value', model.get('value') + 1); model.save_changes(); };
        model.on('change:value', show); show(); el.appendChild(b);
    } }
    """
    value = traitlets.Int(0).tag(sync=True)

counter = Counter()
counter
'''


def test_anywidget_round_trip(lab_server, page):
    """Two clicks on an anywidget button show in the DOM and in the kernel's Python value."""
    nb = "smoke/counter.ipynb"

    write_notebook(lab_server.root_dir / nb, [COUNTER, "print('value', counter.value)"])
    open_notebook(page, lab_server, nb)
    run_all(page)
    button = page.locator(".smoke-btn")
    button.click()
    button.click()
    page.wait_for_function(
        "() => document.querySelector('.smoke-btn').textContent === 'count is 2'"
    )
    # the DOM counts at once; the kernel gets the comm update a moment later (subshells, load)
    deadline = time.monotonic() + 30
    while True:
        run_cell(page, 1)
        shown = page.locator(".jp-CodeCell").nth(1).inner_text()
        if "value 2" in shown or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert "value 2" in shown
    assert cell_errors(page) == []
    assert widget_failures(page) == []
