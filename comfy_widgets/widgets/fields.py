"""One input widget per workflow parameter, with its label and an error line under it.

The form builds a Field for each WorkflowParameter; a Field knows how to read and write its value
and how to show a validation message next to itself.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable
from typing import Any

import ipywidgets as w

JS_SAFE_INT = 2**53 - 1
SEED_RANDOM_MAX = 2**50  # what ComfyUI's frontend uses when it randomizes a seed
CONTROL_MODES = ("fixed", "increment", "decrement", "randomize")
LABEL_WIDTH = "150px"
ROW = w.Layout(width="100%", max_width="720px")


def label_text(param: Any) -> str:
    """A friendly name ("Negative prompt") reads better than the field's label ("Text"); the
    label a workflow's author gave an App Mode input reads best of all."""
    if getattr(param, "app_input", False) and param.label:
        return str(param.label)
    if "." not in param.name:
        return param.name.replace("_", " ").capitalize()
    return str(param.label or param.name)


def _label(param: Any) -> w.HTML:
    """The parameter's label, with its canonical key as a tooltip."""
    text = html.escape(label_text(param))
    key = html.escape(str(param.key))
    return w.HTML(
        f'<span title="{key}">{text}</span>',
        layout=w.Layout(width=LABEL_WIDTH, flex="0 0 auto"),
    )


class Field:
    """A parameter's widget(s) in a row, its value, and an error label underneath."""

    def __init__(self, param: Any, control: w.Widget, extras: tuple[w.Widget, ...] = ()) -> None:
        self.param = param
        self.control = control
        self.error = w.HTML("", layout=w.Layout(display="none", margin="0 0 4px " + LABEL_WIDTH))
        self.error.add_class("cw-field-error")
        row = w.HBox([_label(param), control, *extras], layout=ROW)
        self.box = w.VBox([row, self.error], layout=w.Layout(width="100%"))
        self.box.add_class("cw-field")
        self.box.add_class(f"cw-field-{param.type}")

    @property
    def value(self) -> Any:
        """The value to send for this parameter."""
        return self.control.value

    def set_value(self, value: Any) -> bool:
        """Put ``value`` into the widget; False (and no change) when the widget cannot hold it."""
        lo, hi = getattr(self.control, "min", None), getattr(self.control, "max", None)
        if (
            lo is not None
            and hi is not None
            and isinstance(value, (int, float))
            and not lo <= value <= hi
        ):
            return False  # bounded widgets would clamp silently
        try:
            self.control.value = value
        except Exception:  # traitlets rejects out-of-range or foreign values
            return False
        return True

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the value changes."""
        self.control.observe(lambda _change: callback(), names="value")

    def show_error(self, message: str) -> None:
        """Show ``message`` under the field (empty string hides it)."""
        self.error.value = (
            f'<span style="color: var(--jp-error-color1)">⚠ {html.escape(message)}</span>'
            if message
            else ""
        )
        self.error.layout.display = "block" if message else "none"

    def after_run(self) -> None:
        """Hook for fields that change after each run (seeds)."""


class SelectField(Field):
    """A Dropdown whose current value stays selectable even when the option list lacks it."""

    def __init__(self, param: Any) -> None:
        dropdown = w.Dropdown(layout=w.Layout(flex="1 1 auto", width="auto"))
        super().__init__(param, dropdown)
        self.set_options(list(param.options or []), param.value)

    def set_options(self, options: list[Any], keep: Any = None) -> None:
        """Replace the choices, keeping the current (or ``keep``) value selected."""
        current = self.control.value if keep is None else keep
        pairs = [(str(o), o) for o in options]
        if current is not None and current not in options:
            pairs.insert(0, (f"{current} (not in the server's list)", current))
        self.control.options = pairs
        if current is not None:
            self.control.value = current


class SeedField(Field):
    """A seed as digits (seeds exceed JS safe integers), Randomize, and control-after-generate.

    The button's dice is JupyterLab's bundled Font Awesome icon, not the 🎲 emoji, which shows
    as an empty box where no emoji font is installed.
    """

    def __init__(self, param: Any) -> None:
        text = w.Text(
            str(param.value),
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        self.dice = w.Button(
            description="Randomize",
            icon="dice",
            tooltip="Pick a random seed",
            layout=w.Layout(width="auto", flex="0 0 auto"),
        )
        self.dice.add_class("cw-seed-randomize")
        mode = (
            param.control_after_generate
            if param.control_after_generate in CONTROL_MODES
            else "fixed"
        )
        self.mode = w.Dropdown(
            options=list(CONTROL_MODES),
            value=mode,
            tooltip="control after generate",
            layout=w.Layout(width="120px"),
        )
        self.mode.add_class("cw-seed-control")
        super().__init__(param, text, (self.dice, self.mode))
        self.low = int(param.min) if param.min is not None else 0
        self.high = int(param.max) if param.max is not None else 2**64 - 1
        self.dice.on_click(lambda _b: self.randomize())

    @property
    def value(self) -> Any:
        """The seed as an int, or the raw text when it is not a number (apply() reports it)."""
        text = self.control.value.strip()
        try:
            return int(text)
        except ValueError:
            return text

    def set_value(self, value: Any) -> bool:
        """Show ``value`` (an int, or digits) in the text box."""
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return False
        self.control.value = str(value)
        return True

    def randomize(self) -> None:
        """Pick a new random seed within the seed's range, like ComfyUI's frontend does."""
        self.set_value(random.randint(self.low, min(self.high, self.low + SEED_RANDOM_MAX)))

    def after_run(self) -> None:
        """Apply control-after-generate: keep, step or re-roll the seed for the next run."""
        seed = self.value
        if not isinstance(seed, int) or self.mode.value == "fixed":
            return
        if self.mode.value == "randomize":
            self.randomize()
        elif self.mode.value == "increment":
            self.set_value(seed + 1 if seed < self.high else self.low)
        else:
            self.set_value(seed - 1 if seed > self.low else self.high)


class ImageField(Field):
    """An image input: a file picker, a thumbnail, and the current file name on the server."""

    def __init__(self, param: Any) -> None:
        self.filename = str(param.value or "")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Choose image")
        self.preview = w.Image(layout=w.Layout(max_width="160px", max_height="160px"))
        self.preview.add_class("cw-image-thumb")
        self.name = w.Label(self.filename)
        column = w.VBox([self.upload, self.name, self.preview])
        super().__init__(param, column)
        self.upload.observe(self._on_upload, names="value")
        self._callbacks: list[Callable[[], None]] = []
        self._content: bytes | None = None

    @property
    def value(self) -> Any:
        """Uploaded image bytes once the user picked a file, else the server file name."""
        return self._content if self._content is not None else self.filename

    def set_value(self, value: Any) -> bool:
        """Use raw image bytes, or a file name already on the server."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            self._set_content(bytes(value), "uploaded image")
            return True
        if isinstance(value, str):
            self._content = None
            self.filename = value
            self.name.value = value
            self._notify()
            return True
        return False

    def show_thumbnail(self, data: bytes) -> None:
        """Display ``data`` (encoded image bytes) as the thumbnail."""
        self.preview.value = data

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when a new image is chosen."""
        self._callbacks.append(callback)

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if files:
            self._set_content(bytes(files[0]["content"]), files[0]["name"])

    def _set_content(self, data: bytes, label: str) -> None:
        self._content = data
        self.name.value = f"{label} (uploaded on Run)"
        self.show_thumbnail(data)
        self._notify()

    def _notify(self) -> None:
        for callback in self._callbacks:
            callback()


def _number_control(param: Any) -> w.Widget:
    """BoundedIntText/BoundedFloatText with the real limits, or a slider for short float ranges."""
    lo, hi, step = param.min, param.max, param.step
    layout = w.Layout(flex="1 1 auto", width="auto")
    if param.is_integer:
        lo = max(int(lo), -JS_SAFE_INT) if lo is not None else -JS_SAFE_INT
        hi = min(int(hi), JS_SAFE_INT) if hi is not None else JS_SAFE_INT
        return w.BoundedIntText(
            value=int(param.value), min=lo, max=hi, step=int(step or 1), layout=layout
        )
    lo = float(lo) if lo is not None else -1e300
    hi = float(hi) if hi is not None else 1e300
    step = float(step) if step else None
    value = float(param.value)
    if hi - lo <= 2 and step:
        return w.FloatSlider(
            value=value,
            min=lo,
            max=hi,
            step=step,
            continuous_update=False,
            layout=layout,
            readout_format=".2f",
        )
    return w.BoundedFloatText(value=value, min=lo, max=hi, step=step, layout=layout)


def build_field(param: Any) -> Field:
    """The Field for ``param``, chosen by its type (and multiline / integer flags)."""
    kind = param.type
    if kind == "seed":
        return SeedField(param)
    if kind == "select":
        return SelectField(param)
    if kind == "image":
        return ImageField(param)
    if kind == "boolean":
        return Field(param, w.Checkbox(value=bool(param.value), indent=False))
    if kind == "number":
        return Field(param, _number_control(param))
    if param.multiline:
        area = w.Textarea(
            value=str(param.value or ""),
            rows=4,
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        area.add_class("cw-prompt")
        return Field(param, area)
    text = w.Text(
        value=str(param.value or ""),
        continuous_update=False,
        layout=w.Layout(flex="1 1 auto", width="auto"),
    )
    return Field(param, text)
