"""BatchPanel: set up a batch from a ParameterForm and watch it run (ipywidgets).

Count, seed strategy, a prompt list and sweep rows become a variation plan whose table is
previewed live (nothing queued); Run batch hands the plan to ``client.batch`` on the client's
loop and shows a BatchView, then a ResultGrid once the batch is done.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import ipywidgets as w
import pandas as pd

from comfy_widgets.engine.plan import VariationPlan, increment, new_plan_seed, sweep, values
from comfy_widgets.errors import ComfyWidgetsError, ParameterError
from comfy_widgets.widgets.loop import call_on, current_loop

log = logging.getLogger(__name__)
SEED_STRATEGIES = ("random", "increment", "fixed")
PREVIEW_ROWS = 20
MAX_COUNT = 20


def numeric_parameters(workflow: Any) -> list[Any]:
    """The workflow's number parameters: what a sweep row can vary."""
    return [p for p in workflow.parameters() if p.type == "number"]


def seed_parameter(workflow: Any) -> Any | None:
    """The first seed parameter (the one the seed strategy applies to), or None."""
    return next((p for p in workflow.parameters() if p.type == "seed"), None)


def prompt_parameter(workflow: Any) -> Any | None:
    """The positive prompt (the `prompt` alias, else the first multiline text), or None."""
    params = [p for p in workflow.parameters() if p.type == "string"]
    named = [p for p in params if p.name == "prompt"]
    multiline = [p for p in params if getattr(p, "multiline", False)]
    return (named or multiline or [None])[0]


def default_sweep(param: Any, current: Any = None) -> tuple[float, float, float]:
    """(start, stop, step) for a new sweep row: five values up from `current` (or the default).

    Fine-grained parameters (over 1,000 steps in their range, like cfg by 0.1) step ten times
    coarser; at the top of the range the sweep goes down to the current value instead.
    """
    step = float(param.step or 1)
    low = float(param.min) if param.min is not None else None
    high = float(param.max) if param.max is not None else None
    if low is not None and high is not None and (high - low) / step >= 1000:
        step *= 10
    if current is None:
        current = param.value if param.value is not None else (low or 0.0)
    value = float(current)
    stop = value + 4 * step
    if high is not None and stop > high:
        return max(value - 4 * step, low if low is not None else value - 4 * step), value, step
    return value, stop, step


class SweepRow(w.HBox):
    """One sweep: a numeric parameter with start, stop and step, and a button to remove it."""

    def __init__(
        self, parameters: list[Any], current: dict[str, Any], on_change: Any, on_remove: Any
    ) -> None:
        self.parameters = {p.name: p for p in parameters}
        self.current = current
        self.name = w.Dropdown(
            options=[(_param_label(p), p.name) for p in parameters],
            layout=w.Layout(width="220px"),
        )
        self.start = w.FloatText(description="start", layout=w.Layout(width="140px"))
        self.stop = w.FloatText(description="stop", layout=w.Layout(width="140px"))
        self.step = w.FloatText(description="step", layout=w.Layout(width="140px"))
        for box in (self.start, self.stop, self.step):
            box.style.description_width = "34px"
        self.remove = w.Button(
            icon="minus", tooltip="Remove this sweep", layout=w.Layout(width="34px")
        )
        super().__init__([self.name, self.start, self.stop, self.step, self.remove])
        self.add_class("cw-sweep-row")
        self._defaults()
        self.name.observe(lambda _c: (self._defaults(), on_change()), names="value")
        for box in (self.start, self.stop, self.step):
            box.observe(lambda _c: on_change(), names="value")
        self.remove.on_click(lambda _b: on_remove(self))

    def _defaults(self) -> None:
        """Five values from the form's current value, with a step that shows a difference."""
        name = self.name.value
        start, stop, step = default_sweep(self.parameters[name], self.current.get(name))
        self.start.value, self.stop.value, self.step.value = start, stop, step

    def variation(self) -> tuple[str, Any]:
        """(parameter name, sweep); integers for integer parameters."""
        param = self.parameters[self.name.value]
        bounds = (self.start.value, self.stop.value, self.step.value)
        if getattr(param, "is_integer", False):
            return param.name, sweep(*(_as_int(v) for v in bounds))
        return param.name, sweep(*bounds)


class BatchPanel(w.VBox):
    """The form's Batch panel: count, seeds, prompts, sweeps, a plan preview and Run batch."""

    def __init__(self, form: Any) -> None:
        self.form = form
        self.workflow = form.workflow
        self.batch: Any = None
        self.view: Any = None
        self.plan_seed = new_plan_seed()
        self._loop = current_loop() or getattr(getattr(form, "client", None), "loop", None)
        self._numeric = numeric_parameters(self.workflow)
        self._seed = seed_parameter(self.workflow)
        self._prompt = prompt_parameter(self.workflow)

        label = {"description_width": "70px"}
        self.count = w.IntSlider(
            value=4,
            min=1,
            max=MAX_COUNT,
            description="Count",
            style=label,
            tooltip="How many times each combination runs",
        )
        self.seed = w.ToggleButtons(
            options=SEED_STRATEGIES,
            value="random",
            style={"button_width": "90px"},
            tooltips=[
                "A new random seed per repeat",
                "The form's seed, +1 per repeat",
                "The form's seed for every item",
            ],
        )
        self.prompts = w.Textarea(
            placeholder="One prompt per line; each runs Count times (empty: the form's prompt)",
            description="Prompts",
            style=label,
            layout=w.Layout(width="98%", height="80px"),
        )
        self.mode = w.ToggleButtons(
            options=[("every combination", "grid"), ("pair up (zip)", "zip")],
            value="grid",
            style={"button_width": "160px"},
            tooltips=["Cartesian product of prompts and sweeps", "Pair the i-th values up"],
        )
        self.sweeps = w.VBox([])
        self.add_sweep_button = w.Button(description="Add sweep", icon="plus")
        self.add_sweep_button.disabled = not self._numeric
        self.summary = w.HTML()
        self.preview = w.HTML()
        self.preview.add_class("cw-batch-preview")
        self.run_button = w.Button(description="Run batch", button_style="primary", icon="play")
        self.message = w.HTML()
        self.results = w.VBox([])
        controls: list[w.Widget] = [w.HTML("<b>Batch</b>"), self.count]
        if self._seed is not None:
            controls.append(_labelled("Seed", self.seed))
        if self._prompt is not None:
            controls.append(self.prompts)
        controls += [
            _labelled("Combine", self.mode),
            self.sweeps,
            self.add_sweep_button,
            self.summary,
            self.preview,
            w.HBox([self.run_button, self.message]),
            self.results,
        ]
        super().__init__(controls, layout=w.Layout(width="100%"))
        self.add_class("cw-batch-panel")

        for control in (self.count, self.seed, self.prompts, self.mode):
            control.observe(lambda _c: self.refresh(), names="value")
        if hasattr(form, "observe"):
            form.observe(lambda _c: self.refresh(), names="values")
        self.add_sweep_button.on_click(lambda _b: self.add_sweep())
        self.run_button.on_click(lambda _b: call_on(self._loop, self.run))
        self.refresh()

    # --- plan -------------------------------------------------------------------------------

    def add_sweep(self, name: str | None = None) -> SweepRow:
        """Add a sweep row (for `name`, else the first numeric parameter); refresh the preview."""
        current = dict(getattr(self.form, "values", None) or {})
        row = SweepRow(self._numeric, current, self.refresh, self.remove_sweep)
        if name is not None:
            row.name.value = name
        self.sweeps.children = [*self.sweeps.children, row]
        self.refresh()
        return row

    def remove_sweep(self, row: SweepRow) -> None:
        """Remove a sweep row and refresh the preview."""
        self.sweeps.children = [r for r in self.sweeps.children if r is not row]
        self.refresh()

    def variations(self) -> dict[str, Any]:
        """What the panel asks for, as `client.batch` keyword arguments (without count/mode)."""
        form_values = dict(getattr(self.form, "values", None) or {})
        varied: dict[str, Any] = {}
        if self._seed is not None:
            varied[self._seed.name] = self._seed_variation(form_values.get(self._seed.name))
        lines = [line.strip() for line in self.prompts.value.splitlines() if line.strip()]
        if self._prompt is not None and lines:
            varied[self._prompt.name] = values(lines)
        for row in self.sweeps.children:
            name, axis = row.variation()
            varied[name] = axis
        fixed = {k: v for k, v in form_values.items() if k not in varied}
        return {**fixed, **varied}

    def _seed_variation(self, current: Any) -> Any:
        strategy = self.seed.value
        if strategy == "increment":
            return increment(int(current)) if current is not None else "increment"
        if strategy == "fixed":
            return int(current) if current is not None else "fixed"
        return "random"

    def plan(self) -> VariationPlan:
        """The plan Run batch would run (same plan seed, so the same random seeds)."""
        return VariationPlan(
            self.variations(),
            count=self.count.value,
            mode=self.mode.value,
            plan_seed=self.plan_seed,
            parameters=self.workflow.parameters(),
        )

    def refresh(self) -> None:
        """Rebuild the plan preview; show a bad value as an error instead of a table."""
        try:
            plan = self.plan()
            plan.validate(self._check)
        except (ParameterError, ValueError) as exc:
            self.summary.value = ""
            self.preview.value = _error_html(str(exc))
            self.run_button.disabled = True
            return
        self.run_button.disabled = False
        self.summary.value = html.escape(_summary(plan))
        self.preview.value = plan_table(plan.to_frame())

    def _check(self, item: dict[str, Any]) -> None:
        """Validate one item like the batch will (uploaded images are checked when sent)."""
        images = {p.name for p in self.workflow.parameters() if p.type == "image"}
        self.workflow.apply({k: v for k, v in item.items() if k not in images})

    # --- running ----------------------------------------------------------------------------

    def run(self) -> Any:
        """Start the batch on the form's client and show its progress; returns the Batch."""
        try:
            client = self._client()
            self.batch = client.batch(
                self.workflow,
                count=self.count.value,
                mode=self.mode.value,
                plan_seed=self.plan_seed,
                **self.variations(),
            )
        except ComfyWidgetsError as exc:
            self.message.value = _error_html(str(exc))
            return None
        from comfy_widgets.widgets.batch_view import BatchView

        self.message.value = html.escape(f"Batch {self.batch.id[:8]}: {self.batch.total} queued")
        self.view = BatchView(self.batch)
        self.results.children = [self.view]
        self.batch.subscribe(self._on_batch_change)
        self.plan_seed = new_plan_seed()  # the next batch draws new random seeds
        self.refresh()
        return self.batch

    def _client(self) -> Any:
        client = getattr(self.form, "client", None)
        if client is None:
            from comfy_widgets.engine.client import connect

            client = connect()
            self.form.client = client
        return client

    def _on_batch_change(self, batch: Any) -> None:
        """Once the batch is done, show its results as a ResultGrid under the progress view."""
        if batch is not self.batch or not batch.done() or len(self.results.children) > 1:
            return
        from comfy_widgets.widgets.grid import ResultGrid

        try:
            grid = ResultGrid(batch.df)
        except Exception:  # the progress view still shows every item; the grid is a bonus
            log.warning("could not build the result grid", exc_info=True)
            return
        self.results.children = [self.view, grid]


def plan_table(df: pd.DataFrame, max_rows: int = PREVIEW_ROWS) -> str:
    """The plan as a compact HTML table (the first `max_rows` items, then how many more)."""
    shown = df.head(max_rows)
    table = shown.to_html(
        index=False, classes="cw-plan-table", border=0, float_format="{:g}".format
    ).replace("<table ", '<table style="margin-left:0" ', 1)
    more = len(df) - len(shown)
    tail = f"<div>… and {more} more</div>" if more > 0 else ""
    return (
        '<div class="jp-RenderedHTMLCommon" style="max-height:260px;overflow:auto;padding:0">'
        f"{table}{tail}</div>"
    )


def _summary(plan: VariationPlan) -> str:
    cells = len(plan.cells)
    total = len(plan)
    shape = f"{cells} combination{'s' if cells != 1 else ''} × {plan.count}" if cells > 1 else ""
    return f"{total} generation{'s' if total != 1 else ''}" + (f" ({shape})" if shape else "")


def _labelled(text: str, control: w.Widget) -> w.HBox:
    """A control with a label on its left, as wide as the sliders' descriptions."""
    label = w.Label(text, layout=w.Layout(width="70px", margin="0 6px 0 0"))
    label.style.text_align = "right"
    return w.HBox([label, control], layout=w.Layout(align_items="center"))


def _error_html(message: str) -> str:
    return f'<span style="color:var(--jp-error-color1)">{html.escape(message)}</span>'


def _param_label(param: Any) -> str:
    where = getattr(param, "node_title", None) or getattr(param, "node_class", None)
    return f"{param.name} ({where})" if where and where not in param.name else param.name


def _as_int(value: float) -> int:
    return int(round(value))
