"""What simulated nodes compute: parameter dicts that flow along links instead of tensors.

Every non-primitive output is a dict of the generation parameters gathered upstream (seed,
prompt, steps, cfg, width, height, ...). Samplers mark it `sampled`; output nodes (in
executor.py) draw pictures from it. Primitive outputs (INT, FLOAT, STRING, BOOLEAN) carry values.
"""

from __future__ import annotations

SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
PRIMITIVE_DEFAULTS = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}
# Widget names that carry a generation parameter under another name.
ALIASES = {"text": "prompt", "noise_seed": "seed", "guidance": "cfg"}


def merge_inputs(inputs: dict) -> dict:
    """The parameter dict of a node: upstream dicts merged in input order, then its widgets."""
    params: dict = {}
    widgets: dict = {}
    for name, value in inputs.items():
        if not isinstance(value, dict):
            widgets[ALIASES.get(name, name)] = value
        elif name.startswith("negative"):
            widgets["negative"] = value.get("prompt", "")
        else:
            params.update(value)
    params.update(widgets)
    return params


def sampler_steps(class_type: str, params: dict) -> int:
    """How many progress steps a sampler node reports (0 for other nodes)."""
    if class_type not in SAMPLERS:
        return 0
    steps = int(params.get("steps", 20))
    if class_type == "KSamplerAdvanced":
        start = int(params.get("start_at_step", 0))
        end = int(params.get("end_at_step", 10000))
        return max(0, min(end, steps) - start)
    return max(0, steps)


def evaluate(class_type: str, inputs: dict, node_info: dict) -> tuple:
    """The node's outputs, one per output slot, from its resolved inputs."""
    params = merge_inputs(inputs)
    if class_type in SAMPLERS:
        params["sampled"] = True
    if class_type == "GetImageSize":
        return (
            int(params.get("width", 512)),
            int(params.get("height", 512)),
            int(params.get("batch_size", 1)),
        )
    if class_type == "StringConcatenate":
        return (
            f"{inputs.get('string_a', '')}{inputs.get('delimiter', '')}"
            f"{inputs.get('string_b', '')}",
        )
    return tuple(
        _slot_value(kind, name, params, inputs)
        for kind, name in zip(
            node_info.get("output", []), node_info.get("output_name", []), strict=False
        )
    )


def _slot_value(kind: object, name: str, params: dict, inputs: dict) -> object:
    """One output slot: a primitive picked from the inputs, or the parameter dict."""
    if not isinstance(kind, str) or kind not in PRIMITIVE_DEFAULTS:
        return dict(params)
    for candidate in (name, name.lower(), "value"):
        if candidate in inputs and not isinstance(inputs[candidate], dict):
            return inputs[candidate]
    return PRIMITIVE_DEFAULTS[kind]


def image_size_text(params: dict) -> str:
    """The progress text GetImageSize sends (binary event 3)."""
    return (
        f"width: {int(params.get('width', 512))}, height: {int(params.get('height', 512))}"
        f"\n batch size: {int(params.get('batch_size', 1))}"
    )
