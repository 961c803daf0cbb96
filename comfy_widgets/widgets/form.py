"""ParameterForm: a workflow's parameters as a form, with Run and Batch buttons.

One section per node (prompts first), the real limits and option lists from object_info, seeds
with a Randomize button and control-after-generate, an "Advanced" fold for every other widget
input, errors shown next to the field they name, and the last-used values of the same workflow
restored.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import ipywidgets as w
import traitlets

from comfy_widgets.errors import ComfyWidgetsError, ParameterError, PromptValidationError
from comfy_widgets.records import Recorder, WorkflowRecord, open_recorder
from comfy_widgets.widgets.fallback import LIVE_CLASS, StaticTwin
from comfy_widgets.widgets.fields import ROW, Field, ImageField, SelectField, build_field
from comfy_widgets.widgets.loop import call_on, current_loop, spawn_on

log = logging.getLogger(__name__)
PROMPT_NAMES = ("prompt", "negative_prompt")
RESULT_TRAITS = ("status", "thumbnails", "batch_status", "completed", "failed")


def _section_order(params: list[Any]) -> list[str]:
    """Node ids in display order: the positive prompt's node, the negative's, then graph order."""
    first = [p.node_id for name in PROMPT_NAMES for p in params if p.name == name]
    return list(dict.fromkeys([*first, *(p.node_id for p in params)]))


def _descendants(params: list[Any], children: list[Any]) -> list[Any]:
    """The parameters under ``children`` (inputs of options of nested DynamicCombos)."""
    keys = {p.key for p in children}
    found = [p for p in params if getattr(p, "parent", None) in keys and p not in children]
    return found + (_descendants(params, found) if found else [])


def _section(title: str, fields: list[Field]) -> w.VBox:
    header = w.HTML(f"<b>{html.escape(title)}</b>")
    header.add_class("cw-form-section-title")
    box = w.VBox([header, *(f.box for f in fields)], layout=w.Layout(margin="0 0 8px 0"))
    box.add_class("cw-form-section")
    return box


def node_error_messages(node_errors: dict[str, Any]) -> dict[str, str]:
    """ComfyUI's ``node_errors`` as {"<node_id>.<input>": message} (or {"<node_id>": ...})."""
    messages: dict[str, str] = {}
    for node_id, info in (node_errors or {}).items():
        for err in (info or {}).get("errors", []):
            extra = err.get("extra_info") or {}
            field = extra.get("input_name")
            message = err.get("message") or err.get("type") or "invalid"
            details = err.get("details") or ""
            if details and details != field:
                message = f"{message}: {details}"
            key = f"{node_id}.{field}" if field else str(node_id)
            messages[key] = f"{messages[key]}; {message}" if key in messages else message
    return messages


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """The values that can be remembered as JSON (uploaded image bytes are not)."""
    return {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool))}


def _short(value: Any, limit: int = 200) -> str:
    """A value as short text (image bytes as their size)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<image, {len(value)} bytes>"
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ParameterForm(StaticTwin, w.VBox):
    """A form for a workflow's parameters; ``form.values`` is what Run sends to ``client.run``.

    Displayed with a static twin (see ``fallback``): the last run's result (status, parameters,
    thumbnails), the last batch's, and every parameter's value, for exports and reopened
    notebooks, where dead controls would help nobody.
    """

    values = traitlets.Dict(help="name -> current value of every parameter")

    def __init__(self, workflow: Any, client: Any = None) -> None:
        if not hasattr(workflow, "parameters"):
            from comfy_widgets.workflow.workflow import Workflow

            workflow = Workflow.load(workflow)
        self.workflow = workflow
        self.client = client
        self.last_job: Any = None
        self._loop = current_loop() or (client.loop if client is not None else None)
        self.fields: dict[str, Field] = {}
        self._by_key: dict[str, Field] = {}
        #: Per DynamicCombo key: the box of its option's inputs, and the fields of each option.
        self._option_boxes: dict[str, w.VBox] = {}
        self._option_fields: dict[tuple[str, Any], list[Field]] = {}
        params = list(self.workflow.parameters())
        for param in params:
            field = build_field(param)
            self.fields[param.name] = field
            self._by_key[param.key] = field

        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.batch_button = w.Button(description="Batch", icon="th")
        self.run_button.add_class("cw-run")
        self.batch_button.add_class("cw-batch")
        self.message = w.HTML("")
        self.message.add_class("cw-form-message")
        self.panel_area = w.VBox([])
        self.panel_area.add_class("cw-form-panel")
        self.output = w.VBox([])
        self.output.add_class("cw-form-output")
        self.panel: Any = None
        super().__init__(
            children=[
                *self._sections(params),
                w.HBox([self.run_button, self.batch_button, self.message]),
                self.panel_area,
                self.output,
            ],
            layout=w.Layout(width="100%", max_width="760px"),
        )
        self.add_class("cw-form")
        self.add_class(LIVE_CLASS)
        self._unplaced = self.set_values(self._store().last_used(self._workflow_record()))
        for field in self.fields.values():
            field.on_change(self._on_field_change)
        for param in params:
            if getattr(param, "dynamic", False):
                self._watch_option(param)
        self.run_button.on_click(lambda _b: call_on(self._loop, self.run))
        self.batch_button.on_click(lambda _b: call_on(self._loop, self.open_batch))
        if client is not None and self._loop is not None:
            spawn_on(self._loop, self._load_from_server())

    # --- layout ---------------------------------------------------------------------------

    def _sections(self, params: list[Any]) -> list[w.Widget]:
        chosen = [p for p in params if getattr(p, "app_input", False)]
        if chosen:  # App Mode: the author's inputs in their order, everything else folded
            chosen += [p for p in _descendants(params, chosen) if p not in chosen]
            app = _section("Inputs", [])
            app.children = (*app.children, *self._boxes(chosen))
            app.add_class("cw-form-app")
            return [app, *self._sections([p for p in params if p not in chosen])]
        basic = [p for p in params if not p.advanced]
        advanced = [p for p in params if p.advanced]
        children: list[w.Widget] = [self._node_section(basic, nid) for nid in _section_order(basic)]
        if advanced:
            inner = w.VBox([self._node_section(advanced, nid) for nid in _section_order(advanced)])
            fold = w.Accordion(
                children=[inner],
                titles=("Advanced",),
                selected_index=None,
                # as wide as the rows, and no widget margin to push it past their right edge
                layout=w.Layout(width="100%", max_width=ROW.max_width, margin="0"),
            )
            fold.add_class("cw-form-advanced")
            children.append(fold)
        return children

    def _node_section(self, params: list[Any], node_id: str) -> w.VBox:
        mine = [p for p in params if p.node_id == node_id]
        title = mine[0].node_title or mine[0].node_class or f"#{node_id}"
        section = _section(f"{title}  #{node_id}", [])
        section.children = (*section.children, *self._boxes(mine))
        return section

    def _boxes(self, params: list[Any]) -> list[w.Widget]:
        """Field boxes in order; a DynamicCombo's option inputs go in a box right after it,
        which ``_switch_option`` refills when the option changes."""
        shown = {p.key for p in params}
        boxes: list[w.Widget] = []
        for param in params:
            parent = getattr(param, "parent", None)
            if parent in shown:
                continue  # placed in its DynamicCombo's box
            boxes.append(self.fields[param.name].box)
            if getattr(param, "dynamic", False):
                children = [p for p in params if getattr(p, "parent", None) == param.key]
                box = w.VBox(self._boxes(children + _descendants(params, children)))
                box.add_class("cw-form-option-inputs")
                self._option_boxes[param.key] = box
                self._option_fields[(param.key, param.value)] = [
                    self.fields[p.name] for p in children + _descendants(params, children)
                ]
                boxes.append(box)
        return boxes

    # --- DynamicCombo options ---------------------------------------------------------------

    def _watch_option(self, param: Any) -> None:
        field = self.fields[param.name]
        field.control.observe(
            lambda change: self._switch_option(param, change["new"]), names="value"
        )

    def _switch_option(self, combo: Any, option: Any) -> None:
        """Show the inputs ``option`` gives the node instead of the previous option's
        (fields are kept per option, so switching back restores what was typed)."""
        box = self._option_boxes.get(combo.key)
        if box is None:
            return
        prefix = combo.key + "."
        for name in [n for n, f in self.fields.items() if f.param.key.startswith(prefix)]:
            field = self.fields.pop(name)
            self._by_key.pop(field.param.key, None)
        fields = self._option_fields.get((combo.key, option))
        if fields is None:
            fields = [build_field(p) for p in self.workflow.option_parameters(combo.key, option)]
            for field in fields:
                field.on_change(self._on_field_change)
            self._option_fields[(combo.key, option)] = fields
        for field in fields:
            self.fields[field.param.name] = field
            self._by_key[field.param.key] = field
        box.children = tuple(field.box for field in fields)
        self.values = self._collect()

    # --- values ---------------------------------------------------------------------------

    def _collect(self) -> dict[str, Any]:
        return {name: field.value for name, field in self.fields.items()}

    def _on_field_change(self) -> None:
        self.values = self._collect()

    def _field(self, name: str) -> Field | None:
        return self.fields.get(name) or self._by_key.get(name)

    def set_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Put values (by name or canonical key) into the fields; returns those that did not fit."""
        rejected = {}
        for name, value in (values or {}).items():
            field = self._field(name)
            if field is None or not field.set_value(value):
                rejected[name] = value
        self.values = self._collect()
        return rejected

    def _changed_values(self) -> dict[str, Any]:
        """The values that differ from the workflow's own (what Run needs to send)."""
        return {
            name: value
            for name, value in self._collect().items()
            if value != self.fields[name].param.value
        }

    # --- static fallback ------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/html"] = self.static_html()
            data["text/plain"] = self.twin_text()
        return data

    def twin_text(self) -> str:
        """One line: the workflow, its parameter count and the last run's status."""
        last = f", last run {self.last_job.state}" if self.last_job is not None else ""
        return f"<ParameterForm {self.workflow.name}: {len(self.fields)} parameters{last}>"

    def _result_views(self) -> list[Any]:
        """The views whose final state the twin shows: the last run's, the last batch's."""
        views = [child for child in self.output.children if hasattr(child, "fallback_status")]
        batch_view = getattr(self.panel, "view", None)
        return views + ([batch_view] if batch_view is not None else [])

    def fallback_status(self) -> str:
        """What rewrites the twin when it changes: the result views' own states."""
        return " / ".join(
            f"{getattr(v, 'model_id', '')} {v.fallback_status()}" for v in self._result_views()
        )

    def _watch_result(self, view: Any) -> None:
        """Rewrite the twin whenever ``view`` moves on (its traits change on the kernel side)."""
        view.observe(lambda _c: self._refresh_static_output(), names=list(RESULT_TRAITS))
        self._refresh_static_output()

    def static_html(self) -> str:
        """The last results, then every parameter and its value, for viewers without widgets."""
        rows = "".join(
            f"<tr><td><code>{html.escape(name)}</code></td>"
            f"<td>{html.escape(_short(value))}</td></tr>"
            for name, value in self._collect().items()
        )
        title = html.escape(str(self.workflow.name))
        results = "".join(
            f'<div style="margin:4px 0">{v.static_html()}</div>' for v in self._result_views()
        )
        return (
            f'<div class="cw-form-static"><b>{title}</b> — form'
            f"{results or '<div>not run yet</div>'}"
            f"<details><summary>{len(self.fields)} parameters</summary>"
            f"<table><thead><tr><th>name</th><th>value</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details></div>"
        )

    # --- errors ---------------------------------------------------------------------------

    def clear_errors(self) -> None:
        """Hide every error message."""
        for field in self.fields.values():
            field.show_error("")
        self._say("")

    def show_errors(self, errors: dict[str, str]) -> None:
        """Show each message next to the field it names (name or key); the rest by the buttons."""
        leftover = []
        for name, message in errors.items():
            field = self._field(name)
            if field is None:
                leftover.append(f"{name}: {message}" if name else message)
            else:
                field.show_error(message)
        if leftover:
            self._say("; ".join(leftover), error=True)
        elif errors:
            self._say("Fix the fields marked above; nothing was queued.", error=True)

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "var(--jp-error-color1)" if error else "var(--jp-ui-font-color2)"
        self.message.value = (
            f'<span style="color: {color}">{html.escape(text)}</span>' if text else ""
        )

    # --- actions --------------------------------------------------------------------------

    def run(self) -> Any:
        """Queue the workflow with the form's values and show its progress; returns the Job."""
        self.clear_errors()
        try:
            client = self._ensure_client()
            job = client.run(self.workflow, self._changed_values())
        except ParameterError as exc:
            self.show_errors(exc.errors or {"": str(exc)})
            return None
        except ComfyWidgetsError as exc:
            self._say(str(exc), error=True)
            return None
        self.last_job = job
        self._remember()
        for field in self.fields.values():
            field.after_run()
        job.subscribe(self._on_job_change)
        from comfy_widgets.widgets.progress import ProgressView

        view = ProgressView(job)
        self.output.children = [view]
        self._watch_result(view)
        return job

    def _on_job_change(self, job: Any) -> None:
        """Show the server's validation errors (the prompt was not queued) next to their fields."""
        if job.state == "failed" and isinstance(job.error, PromptValidationError):
            messages = node_error_messages(job.error.node_errors)
            self.show_errors(messages or {"": str(job.error)})

    def open_batch(self) -> Any:
        """Open the batch panel below the buttons (the last run's result stays under it); a
        second press closes it again."""
        if self.panel_area.children:
            self.panel_area.children = []
            return self.panel
        try:
            from comfy_widgets.widgets.batch_panel import BatchPanel
        except ImportError as exc:
            self._say(f"The batch panel is not available: {exc}", error=True)
            return None
        if self.panel is None:
            self.panel = BatchPanel(self)
        self.panel_area.children = [self.panel]
        return self.panel

    def _ensure_client(self) -> Any:
        if self.client is None:
            from comfy_widgets.engine.client import connect

            self.client = connect()
        return self.client

    def _workflow_record(self) -> WorkflowRecord:
        """The form's workflow as the Recorder keys it (name, source, format, content hash)."""
        wf = self.workflow
        return WorkflowRecord(wf.name, wf.source, wf.format, wf.content_hash)

    def _store(self) -> Recorder:
        """Where last-used values live: the client's Recorder (nothing when recording is off),
        the default store before a client is known."""
        if self.client is not None:
            return self.client.recorder
        return open_recorder("default")

    def _remember(self) -> None:
        try:
            self._store().set_last_used(self._workflow_record(), _json_safe(self._collect()))
        except Exception:  # remembering is a convenience; never block a run on it
            log.warning("could not save last-used values", exc_info=True)

    # --- server data ----------------------------------------------------------------------

    async def _load_from_server(self) -> None:
        """Fill option lists from the server's object_info and fetch image-input thumbnails."""
        try:
            info = await self.client.get_object_info()
        except ComfyWidgetsError as exc:
            self._say(f"Using the bundled node list ({exc})")
            return
        self.workflow = self.workflow.with_object_info(info)
        for param in self.workflow.parameters():
            field = self._by_key.get(param.key)
            if isinstance(field, SelectField) and param.options:
                field.set_options(list(param.options))
        # last-used choices that only the server's lists hold (a checkpoint, a LoRA), unless
        # the user already picked something else
        self._unplaced = self.set_values(
            {
                name: value
                for name, value in self._unplaced.items()
                if (field := self._field(name)) is not None and field.value == field.param.value
            }
        )
        for field in self.fields.values():
            if isinstance(field, ImageField) and field.filename:
                try:
                    field.show_thumbnail(await self.client.view(field.filename, type="input"))
                except ComfyWidgetsError:
                    field.name.value = f"{field.filename} (not on the server)"
