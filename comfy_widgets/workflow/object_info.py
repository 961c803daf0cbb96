"""Node definitions from a ComfyUI server's ``GET /object_info``, and the widgets they imply.

The frontend builds each node's widget list from these definitions; UI workflows store widget
values by position in that list, so conversion and parameter detection both start here.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any, Literal

Source = Literal["bundled", "server", "user"]

#: Input types the frontend (1.27.10) renders as a widget; any other type is a link socket.
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "STRING",
        "BOOLEAN",
        "COMBO",
        "MARKDOWN",
        "FILEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "TREESELECT",
        "MULTISELECT",
        "CHART",
        "GALLERIA",
        "SELECTBUTTON",
        "TEXTAREA",
        "WEBCAM",
        "AUDIO_RECORD",
        "LOAD_3D",
        "LOAD_3D_ANIMATION",
        "COMFY_DYNAMICCOMBO_V3",
        "PREVIEW_3D",
        # widgets frontend 1.58 added (``ComfyWidgets`` in scripts/widgets.ts)
        "BOUNDING_BOX",
        "PAINTER",
        "COMPOSITOR",
        "CURVE",
        "RANGE",
        "VIDEO_EDIT",
        "RESOLUTION_PREVIEW",
        "BOUNDING_BOXES",
        "LIGHT_INFO_PREVIEW",
        "COLORS",
    }
)
#: V3 inputs whose chosen option adds child inputs named ``<input>.<child>`` right after it.
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
#: V3 inputs that grow a group of numbered inputs (``images.image_1``…) as they are connected.
AUTOGROW = "COMFY_AUTOGROW_V3"
#: V3 inputs that take whatever type is connected, among the types they allow.
MATCH_TYPE = "COMFY_MATCHTYPE_V3"
#: Nodes whose widgets the frontend's extensions change while values are applied.
CUSTOM_COMBO = "CustomCombo"
#: Folders whose file lists describe one machine only (models, inputs).
MODEL_LIST_INPUTS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "model_name": "upscale_models",
    "upscale_model": "upscale_models",
    "gligen_name": "gligen",
    "audio_encoder_name": "audio_encoders",
    "model_patch_name": "model_patches",
    "image": "input",
    "audio": "input",
    "video": "input",
    "file": "input",
    "model_file": "input",
}
#: Nodes to which the frontend adds an ``audioUI`` widget (always serialized as "").
AUDIO_UI_NODES = frozenset(
    {"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced"}
)
_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
#: Widget types added by the frontend's extensions that hold no node input value.
_PSEUDO_WIDGET_TYPES = frozenset({"IMAGEUPLOAD", "AUDIOUPLOAD", "AUDIO_UI"})


@dataclass(frozen=True)
class InputSpec:
    """One input of a node definition: its name, type (``COMBO`` for choice lists) and options."""

    name: str
    type: str
    options: dict[str, Any]
    required: bool
    choices: tuple[Any, ...] | None = None

    @cached_property
    def is_widget(self) -> bool:
        """True when the frontend shows this input as a widget rather than a link socket."""
        widget_type = self.options.get("widgetType") or self.type
        return widget_type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def creates_widget(self) -> bool:
        """True when the frontend creates a widget (value or UI-only) for this input."""
        widget_type = self.options.get("widgetType") or self.type
        return (
            widget_type in WIDGET_TYPES or widget_type in _PSEUDO_WIDGET_TYPES
        ) and not self.options.get("forceInput")

    @property
    def has_control(self) -> bool:
        """True when the frontend adds a hidden ``control_after_generate`` widget after it."""
        flag = self.options.get("control_after_generate")
        if self.type == "INT":
            return bool(flag) if flag is not None else self.name in ("seed", "noise_seed")
        return self.type == "COMBO" and bool(flag)


@dataclass(frozen=True)
class Widget:
    """A widget slot on a node, in the frontend's order.

    ``in_prompt`` is False for UI-only widgets (control values, upload buttons); ``stored`` is
    False for widgets that take no place in ``widgets_values``; ``fixed`` is a value the
    frontend always sends instead of the stored one.
    """

    name: str
    spec: InputSpec | None = None
    in_prompt: bool = True
    stored: bool = True
    fixed: Any = None
    has_fixed: bool = False
    default: Any = None
    #: For the combo an upload button serves: the folder its file names are annotated with.
    upload_folder: str | None = None

    @cached_property
    def plain(self) -> bool:
        """True when the frontend sends the stored value as it is (no fixed or text value)."""
        spec = self.spec
        return not (
            self.has_fixed
            or self.upload_folder is not None
            or (
                spec is not None
                and spec.type == "STRING"
                and (spec.options.get("multiline") or spec.options.get("dynamicPrompts"))
            )
        )


def _parse_spec(name: str, raw: Any, required: bool) -> InputSpec:
    """Parse a V1 (``[[choices], {}]``) or V3 (``["COMBO", {"options": []}]``) input spec."""
    if not isinstance(raw, (list, tuple)) or not raw:
        return InputSpec(name, str(raw), {}, required)
    head = raw[0]
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    if not required and options.get("defaultInput"):
        options = {**options, "forceInput": True}  # the frontend's migration of defaultInput
    if isinstance(head, list):
        return InputSpec(name, "COMBO", options, required, tuple(head))
    if head == "COMBO":
        return InputSpec(name, "COMBO", options, required, tuple(options.get("options") or ()))
    if head == DYNAMIC_COMBO:
        keys = tuple(str(o.get("key")) for o in options.get("options") or () if isinstance(o, dict))
        return InputSpec(name, DYNAMIC_COMBO, options, required, keys)
    return InputSpec(name, str(head), options, required)


def option_children(spec: InputSpec, key: Any) -> list[InputSpec]:
    """The child inputs a DynamicCombo adds for option ``key``, named ``<input>.<child>``
    (required then optional), as the frontend's ``dynamicComboWidget`` adds them."""
    if spec.type != DYNAMIC_COMBO:
        return []
    for option in spec.options.get("options") or ():
        if isinstance(option, dict) and str(option.get("key")) == str(key):
            inputs = option.get("inputs")
            inputs = inputs if isinstance(inputs, dict) else {}
            children: list[InputSpec] = []
            for section in ("required", "optional"):
                group = inputs.get(section)
                for name, raw in (group if isinstance(group, dict) else {}).items():
                    children.append(_parse_spec(f"{spec.name}.{name}", raw, section == "required"))
            return children
    return []


def default_option(spec: InputSpec) -> Any:
    """The option a new DynamicCombo widget starts with: its first key (the frontend builds the
    combo from the keys alone, so a ``default`` in the spec is not used)."""
    return spec.choices[0] if spec.choices else None


def child_widgets(spec: InputSpec, key: Any) -> list[Widget]:
    """The widget slots the children of one DynamicCombo option create, nested ones expanded."""
    widgets: list[Widget] = []
    for child in option_children(spec, key):
        widgets.extend(_widgets_for(child))
    return widgets


def autogrow_spec(spec: InputSpec, name: str) -> InputSpec | None:
    """The input spec an Autogrow input gives one of its grown inputs (``<group>.<name>``):
    its template input, named as the frontend names it (``names[i]``, or prefix/key + ordinal)."""
    if spec.type != AUTOGROW or not name.startswith(spec.name + "."):
        return None
    template = spec.options.get("template")
    template = template if isinstance(template, dict) else {}
    inputs = template.get("input")
    inputs = inputs if isinstance(inputs, dict) else {}
    specs = []
    for section in ("required", "optional"):
        group = inputs.get(section)
        for key, raw in (group if isinstance(group, dict) else {}).items():
            specs.append(_parse_spec(key, raw, section == "required"))
    base = name[len(spec.name) + 1 :]
    names = template.get("names")
    prefix = template.get("prefix") or ""
    for child in specs:
        if isinstance(names, list) and base in names:
            ordinal_ok = True
        else:
            stem = prefix if len(specs) == 1 else child.name
            ordinal_ok = base.startswith(str(stem)) and base[len(str(stem)) :].isdigit()
        if ordinal_ok:
            return InputSpec(name, child.type, child.options, False, child.choices)
    return None


def resolve_input(
    info: ObjectInfo, class_type: str, name: str, inputs: dict[str, Any]
) -> InputSpec | None:
    """The spec of one input a prompt sends, dotted ones included: ``model.duration`` is a child
    of DynamicCombo ``model`` under its current option (``inputs['model']``), nested ones
    recursively; ``images.image_1`` an input grown by Autogrow ``images``."""
    specs: tuple[InputSpec, ...] | list[InputSpec] = info.inputs(class_type)
    while True:
        match = next((s for s in specs if s.name == name), None)
        if match is not None:
            return match
        parent = next((s for s in specs if name.startswith(s.name + ".")), None)
        if parent is None:
            return None
        if parent.type == AUTOGROW:
            return autogrow_spec(parent, name)
        if parent.type != DYNAMIC_COMBO:
            return None
        option = inputs.get(parent.name)
        specs = option_children(parent, option)


class ObjectInfo:
    """The node definitions in use, and where they came from.

    ``source`` is ``"server"`` for a live server's answer (its model lists can be trusted),
    ``"bundled"`` for the snapshot shipped with the package, ``"user"`` for anything else.
    """

    def __init__(self, raw: dict[str, Any], source: Source = "server"):
        if not isinstance(raw, dict):
            raise TypeError("object_info must be a dict of node class -> definition")
        self.raw = raw
        self.source: Source = source
        self._inputs: dict[str, tuple[InputSpec, ...]] = {}
        self._widgets: dict[str, tuple[Widget, ...]] = {}
        self._slots: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self._plans: dict[str, tuple[tuple[bool, ...], int] | None] = {}
        self._names: dict[str, frozenset[str]] = {}
        self._folders: dict[tuple[str, str], str | None] = {}
        self._dynamic: dict[str, bool] = {}

    @classmethod
    def bundled(cls) -> ObjectInfo:
        """The snapshot of a ComfyUI 0.3.64 server bundled with the package (cached)."""
        return _bundled()

    @property
    def trusts_model_lists(self) -> bool:
        """True when file-list options (checkpoints, LoRAs…) describe the server that will run."""
        return self.source == "server"

    def has(self, class_type: str) -> bool:
        """Whether this server knows the node class."""
        return class_type in self.raw

    def node(self, class_type: str) -> dict[str, Any]:
        """The raw NodeInfo dict of one class (KeyError if unknown)."""
        return self.raw[class_type]

    def display_name(self, class_type: str) -> str:
        """The default node title as frontend 1.58 resolves it in English (``resolveNodeDefPath``
        in ``i18n.ts``): the server's display name, else the frontend's own, else the class."""
        info = self.raw.get(class_type)
        name = info.get("display_name") if isinstance(info, dict) else None
        if isinstance(name, str) and name:
            return name
        return _frontend_titles().get(class_type) or class_type

    def inputs(self, class_type: str) -> tuple[InputSpec, ...]:
        """Required then optional inputs of a class, in the server's order."""
        cached = self._inputs.get(class_type)
        if cached is None:
            cached = tuple(_iter_inputs(self.raw.get(class_type) or {}))
            self._inputs[class_type] = cached
        return cached

    def input(self, class_type: str, name: str) -> InputSpec | None:
        """One input spec by name, or None."""
        for spec in self.inputs(class_type):
            if spec.name == name:
                return spec
        return None

    def widgets(self, class_type: str) -> tuple[Widget, ...]:
        """The widget slots the frontend creates for a class, in ``widgets_values`` order."""
        cached = self._widgets.get(class_type)
        if cached is None:
            cached = tuple(_build_widgets(class_type, self.raw.get(class_type) or {}))
            self._widgets[class_type] = cached
        return cached

    def is_dynamic(self, class_type: str) -> bool:
        """True when a node's widget list changes as its values are applied (DynamicCombo
        inputs, the CustomCombo extension): values must then be applied one at a time."""
        cached = self._dynamic.get(class_type)
        if cached is None:
            cached = class_type == CUSTOM_COMBO or any(
                w.spec is not None and w.spec.type == DYNAMIC_COMBO
                for w in self.widgets(class_type)
            )
            self._dynamic[class_type] = cached
        return cached

    def migration_plan(self, class_type: str) -> tuple[tuple[bool, ...], int] | None:
        """For ``migrate_widget_values``: which old widget values were forceInput ones, and how
        many values an old save had; None when the class has no forceInput input."""
        if class_type not in self._plans:
            record = _input_record(class_type, self.raw.get(class_type) or {})
            names = {w.name for w in self.widgets(class_type)}
            originals = [s for s in record if s.name in names or s.options.get("forceInput")]
            plan = None
            if any(s.options.get("forceInput") for s in originals):
                count = sum(
                    2
                    if s.options.get("control_after_generate") or s.name in ("seed", "noise_seed")
                    else 1
                    for s in originals
                )
                plan = (tuple(bool(s.options.get("forceInput")) for s in originals), count)
            self._plans[class_type] = plan
        return self._plans[class_type]

    def widget_names(self, class_type: str) -> frozenset[str]:
        """Names of all widgets a node of this class has (hidden ones included)."""
        cached = self._names.get(class_type)
        if cached is None:
            cached = frozenset(w.name for w in self.widgets(class_type))
            self._names[class_type] = cached
        return cached

    def input_slots(self, class_type: str) -> tuple[tuple[str, str, bool], ...]:
        """The input sockets a new node gets: (name, type, has_widget), link sockets first.

        The frontend adds a socket for each link input, then one for each widget input; on
        load it matches stored inputs to these by name.
        """
        cached = self._slots.get(class_type)
        if cached is None:
            specs = _frontend_inputs(class_type, self.raw.get(class_type) or {})
            cached = tuple(
                [(s.name, _socket_type(s), False) for s in specs if not s.creates_widget]
                + [(s.name, _socket_type(s), True) for s in specs if s.creates_widget]
            )
            self._slots[class_type] = cached
        return cached

    def model_folder(self, class_type: str, name: str) -> str | None:
        """The folder name when an input's options are server files (e.g. ``"checkpoints"``)."""
        key = (class_type, name)
        if key not in self._folders:
            self._folders[key] = self._find_model_folder(class_type, name)
        return self._folders[key]

    def _find_model_folder(self, class_type: str, name: str) -> str | None:
        spec = self.input(class_type, name)
        if spec is None or spec.type != "COMBO":
            return None
        folder = MODEL_LIST_INPUTS.get(name)
        if folder is None and spec.options.get("image_upload"):
            folder = "input"
        if folder is None and any(
            str(c).endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"))
            for c in (spec.choices or ())
        ):
            folder = "models"
        return folder

    def __repr__(self) -> str:
        return f"ObjectInfo({len(self.raw)} node classes, source={self.source!r})"


def _socket_type(spec: InputSpec) -> str:
    """The type of an input's socket: a MatchType input takes the types it allows
    (``applyMatchType`` in dynamicWidgets.ts), any other its own."""
    if spec.type == MATCH_TYPE:
        template = spec.options.get("template")
        allowed = template.get("allowed_types") if isinstance(template, dict) else None
        if isinstance(allowed, str) and allowed:
            return allowed
    return spec.type


def _iter_inputs(info: dict[str, Any]):
    """Yield InputSpec for the required then optional inputs of a NodeInfo dict."""
    inputs = info.get("input") or {}
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name, raw in specs.items():
            yield _parse_spec(name, raw, section == "required")


def _input_record(class_type: str, info: dict[str, Any]) -> list[InputSpec]:
    """The node's inputs as the frontend records them, with the extensions' pseudo-inputs.

    Extensions append ``audioUI`` and ``upload`` to the required inputs; a later optional
    input of the same name replaces a required one (keeping its place).
    """
    record: dict[str, InputSpec] = {}
    for spec in _iter_inputs(info):
        if spec.required:
            record[spec.name] = spec
    if class_type in AUDIO_UI_NODES:
        record["audioUI"] = InputSpec("audioUI", "AUDIO_UI", {}, True)
    if class_type in ("SaveGLB", "Preview3D"):  # the 3D viewer (Comfy.SaveGLB, Comfy.Preview3D)
        record["image"] = InputSpec("image", "PREVIEW_3D", {}, True)
    audio = record.get("audio")
    if audio is not None and audio.options.get("audio_upload") is True:
        record["upload"] = InputSpec("upload", "AUDIOUPLOAD", {}, True)
    if _upload_target(list(record.values())) is not None:
        record["upload"] = InputSpec("upload", "IMAGEUPLOAD", {}, True)
    for spec in _iter_inputs(info):
        if not spec.required:
            record[spec.name] = spec
    return list(record.values())


def _upload_target(required: list[InputSpec]) -> InputSpec | None:
    """The first required media combo (image/video upload), which gets an upload button."""
    for spec in required:
        if spec.type == "COMBO" and any(spec.options.get(f) is True for f in _UPLOAD_FLAGS):
            return spec
    return None


def _frontend_inputs(class_type: str, info: dict[str, Any]) -> list[InputSpec]:
    """Inputs in the order the frontend creates them: ``input_order`` first, the rest after."""
    record = _input_record(class_type, info)
    order = info.get("input_order")
    if not isinstance(order, dict):
        return record
    by_name = {spec.name: spec for spec in record}
    ordered: list[InputSpec] = []
    for section, required in (("required", True), ("optional", False)):
        for name in order.get(section) or []:
            spec = by_name.get(name)
            if spec is not None and spec.required == required and spec not in ordered:
                ordered.append(spec)
    ordered.extend(spec for spec in record if spec not in ordered)
    return ordered


def _build_widgets(class_type: str, info: dict[str, Any]):
    """Yield the widget slots frontend 1.27.10 creates for a node class, hidden ones included."""
    target = _upload_target([s for s in _iter_inputs(info) if s.required])
    for spec in _frontend_inputs(class_type, info):
        upload_folder = spec.options.get("image_folder", "input") if spec == target else None
        yield from _widgets_for(spec, upload_folder)
    if class_type == CUSTOM_COMBO:
        # Comfy.CustomWidgets: a hidden ``index`` (of the chosen option) and the first option.
        yield Widget("index", default=-1)
        yield Widget("option1", InputSpec("option1", "STRING", {}, True), default="")


def _widgets_for(spec: InputSpec, upload_folder: str | None = None):
    """Yield the widget(s) one input creates: the value widget and its hidden companions."""
    widget_type = spec.options.get("widgetType") or spec.type
    if spec.options.get("forceInput"):
        return
    if widget_type == "AUDIO_UI":  # a player: neither saved nor sent since frontend 1.58
        yield Widget(spec.name, in_prompt=False, stored=False)
    elif widget_type == "IMAGECOMPARE":  # saved nowhere, always sends two empty images
        yield Widget(spec.name, spec, stored=False, fixed=["", ""], has_fixed=True)
    elif widget_type == "RESOLUTION_PREVIEW":  # a picture of the size: neither saved nor sent
        yield Widget(spec.name, in_prompt=False, stored=False)
    elif widget_type == "PREVIEW_3D":  # the SaveGLB viewer's file, saved and sent as is
        yield Widget(spec.name, default="")
    elif widget_type in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
        yield Widget(spec.name, in_prompt=False)
    elif widget_type in WIDGET_TYPES:
        yield Widget(spec.name, spec, upload_folder=upload_folder)
        remote = spec.options.get("remote")
        if widget_type == "COMBO" and isinstance(remote, dict):
            yield Widget("Auto-refresh after generation", in_prompt=False, default=False)
            if remote.get("refresh_button"):
                yield Widget("refresh", default="refresh")
        if spec.has_control:
            yield Widget("control_after_generate", in_prompt=False)
            if widget_type == "COMBO":
                yield Widget("control_filter_list", in_prompt=False)
        if widget_type == DYNAMIC_COMBO:
            yield from child_widgets(spec, default_option(spec))


def migrate_widget_values(object_info: ObjectInfo, class_type: str, values: list[Any]) -> list[Any]:
    """Drop stored values of ``forceInput`` inputs from workflows saved before frontend 1.16.

    This is the frontend's ``migrateWidgetsValues``, quirks included: it only acts when the
    count of widget-or-forceInput inputs (seeds count twice) equals the number of values.
    """
    plan = object_info.migration_plan(class_type)
    if plan is None or plan[1] != len(values):
        return values
    forced = plan[0]
    return [value for i, value in enumerate(values) if i >= len(forced) or not forced[i]]


@lru_cache(maxsize=1)
def _bundled() -> ObjectInfo:
    """Load the bundled snapshot once."""
    data = resources.files("comfy_widgets").joinpath("data/object_info.json.gz").read_bytes()
    return ObjectInfo(json.loads(gzip.decompress(data)), source="bundled")


@lru_cache(maxsize=1)
def _frontend_titles() -> dict[str, str]:
    """English display names that frontend 1.58.1 shows (and sends) before the server's own."""
    data = resources.files("comfy_widgets").joinpath("data/frontend_titles.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))
