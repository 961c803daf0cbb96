"""Which node inputs are the well-known parameters of a workflow, and their friendly names.

The table lists the inputs people change most (the seed plan's table plus modern Flux, SD3, SDXL
and video nodes). ``prompt`` and ``negative_prompt`` are found by following the links back from
a sampler's or guider's positive and negative inputs to the text encoder that feeds them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from comfy_widgets.workflow.object_info import ObjectInfo

_LATENT_SIZE = ("width", "height", "batch_size")
_VIDEO_SIZE = ("width", "height", "length", "batch_size")
_SAMPLER = ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")

#: class_type -> inputs shown as ordinary (non-advanced) parameters.
DETECTION_TABLE: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "KSampler": _SAMPLER,
    "KSamplerAdvanced": (
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
    ),
    "SamplerCustom": ("noise_seed", "cfg"),
    "RandomNoise": ("noise_seed",),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "CFGGuider": ("cfg",),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative"),
    "FluxGuidance": ("guidance",),
    "EmptyLatentImage": _LATENT_SIZE,
    "EmptySD3LatentImage": _LATENT_SIZE,
    "EmptyHunyuanLatentVideo": _VIDEO_SIZE,
    "EmptyMochiLatentVideo": _VIDEO_SIZE,
    "EmptyLTXVLatentVideo": _VIDEO_SIZE,
    "EmptyCosmosLatentVideo": _VIDEO_SIZE,
    "WanImageToVideo": _VIDEO_SIZE,
    "WanFunInpaintToVideo": _VIDEO_SIZE,
    "WanFirstLastFrameToVideo": _VIDEO_SIZE,
    "LatentUpscale": ("width", "height"),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "UNETLoader": ("unet_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "CLIPLoader": ("clip_name",),
    "VAELoader": ("vae_name",),
    "LoadImage": ("image",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "TextEncodeQwenImageEdit": ("prompt",),
    "PrimitiveInt": ("value",),
    "PrimitiveFloat": ("value",),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
    "PrimitiveBoolean": ("value",),
    "SaveImage": ("filename_prefix",),
}

#: Inputs whose friendly name is ``seed`` whatever they are called on the node.
SEED_FIELDS = frozenset({"seed", "noise_seed"})
#: Text inputs that carry the prompt on an encoder, best first.
_TEXT_FIELDS = ("text", "prompt", "t5xxl", "text_g", "clip_l", "clip_g", "text_l", "llama", "value")
#: Sampler/guider inputs that carry the positive and the negative conditioning.
_POSITIVE_INPUTS = ("positive", "cond1", "conditioning")
_NEGATIVE_INPUTS = ("negative",)


def friendly_alias(class_type: str, field: str) -> str:
    """The plain friendly name of an input (``noise_seed`` -> ``seed``), before prompt roles."""
    return "seed" if field in SEED_FIELDS else field


def is_seed_field(field: str, spec_type: str | None) -> bool:
    """Seeds get their own parameter type so batches can randomize them."""
    return field in SEED_FIELDS and spec_type in (None, "INT")


def prompt_roles(prompt: dict[str, Any], object_info: ObjectInfo) -> dict[tuple[str, str], str]:
    """Map (node_id, field) of text inputs to ``"prompt"`` or ``"negative_prompt"``.

    The positive text is what reaches a sampler's (or guider's) positive input through the
    links; the negative likewise. A text that reaches both keeps the positive role.
    """
    positive: list[tuple[str, str]] = []
    negative: list[tuple[str, str]] = []
    for node in prompt.values():
        inputs = node.get("inputs") or {}
        for name in _POSITIVE_INPUTS:
            if _is_link(inputs.get(name)) and _is_conditioning(node, name, object_info):
                positive.extend(_texts_upstream(prompt, inputs[name], object_info))
                break
        for name in _NEGATIVE_INPUTS:
            if _is_link(inputs.get(name)) and _is_conditioning(node, name, object_info):
                negative.extend(_texts_upstream(prompt, inputs[name], object_info))
    roles: dict[tuple[str, str], str] = {}
    for key in negative:
        roles[key] = "negative_prompt"
    for key in positive:
        roles[key] = "prompt"
    return roles


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _is_conditioning(node: dict[str, Any], name: str, object_info: ObjectInfo) -> bool:
    """True when the input is a CONDITIONING socket (or the class is unknown: assume so)."""
    class_type = str(node.get("class_type"))
    if not object_info.has(class_type):
        return name in ("positive", "negative")
    spec = object_info.input(class_type, name)
    return spec is not None and spec.type == "CONDITIONING"


def _texts_upstream(
    prompt: dict[str, Any], start: list[Any], object_info: ObjectInfo
) -> list[tuple[str, str]]:
    """Breadth-first from a conditioning link to the nearest text encoders' text inputs.

    A node with several conditioning inputs (e.g. WanImageToVideo's positive and negative) is
    followed only through the input named like the output the link came from.
    """
    found: list[tuple[str, str]] = []
    queue = deque([(str(start[0]), start[1])])
    seen: set[tuple[str, Any]] = set()
    while queue:
        node_id, slot = queue.popleft()
        if (node_id, slot) in seen or node_id not in prompt:
            continue
        seen.add((node_id, slot))
        text = _text_input(prompt, node_id, object_info)
        if text is not None:
            found.append(text)
            continue
        for value in _conditioning_sources(prompt[node_id], slot, object_info):
            queue.append((str(value[0]), value[1]))
    return found


def _conditioning_sources(
    node: dict[str, Any], slot: Any, object_info: ObjectInfo
) -> list[list[Any]]:
    """The links a conditioning output at ``slot`` derives from."""
    class_type = str(node.get("class_type"))
    known = object_info.has(class_type)
    links = {}
    for name, value in (node.get("inputs") or {}).items():
        spec = object_info.input(class_type, name) if known else None
        if _is_link(value) and (spec is None or spec.type == "CONDITIONING"):
            links[name] = value
    if len(links) < 2:
        return list(links.values())
    out_names = object_info.node(class_type).get("output_name") or [] if known else []
    wanted = (
        str(out_names[slot]).lower()
        if isinstance(slot, int) and slot < len(out_names)
        else {0: "positive", 1: "negative"}.get(slot, "")
    )
    matching = [v for k, v in links.items() if k.lower() == wanted]
    return matching or list(links.values())


def _text_input(
    prompt: dict[str, Any], node_id: str, object_info: ObjectInfo
) -> tuple[str, str] | None:
    """The (node_id, field) holding a text encoder's prompt, following a linked text input."""
    node = prompt[node_id]
    class_type = str(node.get("class_type"))
    inputs = node.get("inputs") or {}
    for name in _TEXT_FIELDS:
        if name not in inputs or name == "value":
            continue
        spec = object_info.input(class_type, name) if object_info.has(class_type) else None
        if spec is not None and spec.type != "STRING":
            continue
        value = inputs[name]
        if isinstance(value, str):
            return (node_id, name)
        if _is_link(value) and value[0] in prompt:
            source = prompt[value[0]]
            if isinstance((source.get("inputs") or {}).get("value"), str):
                return (value[0], "value")
    return None
