"""Which ComfyUI version the simulator speaks, and what differs between the versions it knows.

Everything here was observed on real servers (tests/reference/comfyui-0.27/README.md lists the
differences): 0.27 adds the `/api/jobs*` endpoints, canonical-UUID prompt ids, the
`missing_node_type` and `dependency_cycle` errors, node replacement, `extra_data.create_time`,
more feature flags and its own node set; WebSocket messages are the same in both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum


class Emulate(str, Enum):
    """A ComfyUI version the simulator can emulate (the newest is the default)."""

    V0_3_64 = "0.3.64"
    V0_27 = "0.27"

    @classmethod
    def parse(cls, value: str | Emulate | None) -> Emulate:
        """`"0.27"`, `"0.27.0"`, `"0.3.64"` or an Emulate; None means the newest."""
        if value is None:
            return NEWEST
        if isinstance(value, Emulate):
            return value
        text = str(value).strip()
        for version in cls:
            if text in (version.value, PROFILES[version].full_version):
                return version
        known = ", ".join(v.value for v in cls)
        raise ValueError(f"cannot emulate ComfyUI {value!r}: known versions are {known}")

    @property
    def profile(self) -> Profile:
        """What this version serves and how it behaves."""
        return PROFILES[self]


@dataclass(frozen=True)
class Profile:
    """The observable traits of one ComfyUI version."""

    full_version: str
    object_info_file: str  # in comfy_widgets/data/
    jobs_api: bool  # GET /api/jobs, /api/jobs/{id}, POST /api/jobs/{id}/cancel, /api/jobs/cancel
    strict_prompt_id: bool  # a client prompt_id must be a canonical lowercase UUID
    missing_node_type: bool  # unknown / absent class_type: missing_node_type, not invalid_prompt
    dependency_cycle: bool  # cycles reported per node (0.3.64: empty node_errors)
    node_replacement: bool  # old class names rewritten before validation
    create_time: bool  # extra_data.create_time (ms) stored with each queued prompt
    features: dict
    system: dict  # version fields of /system_stats


_FEATURES_0_3_64 = {"supports_preview_metadata": True, "max_upload_size": 104857600}

PROFILES: dict[Emulate, Profile] = {
    Emulate.V0_3_64: Profile(
        full_version="0.3.64",
        object_info_file="object_info_0.3.64.json.gz",
        jobs_api=False,
        strict_prompt_id=False,
        missing_node_type=False,
        dependency_cycle=False,
        node_replacement=False,
        create_time=False,
        features=_FEATURES_0_3_64,
        system={
            "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
        },
    ),
    Emulate.V0_27: Profile(
        full_version="0.27.0",
        object_info_file="object_info.json.gz",
        jobs_api=True,
        strict_prompt_id=True,
        missing_node_type=True,
        dependency_cycle=True,
        node_replacement=True,
        create_time=True,
        features={
            **_FEATURES_0_3_64,
            "extension": {"manager": {"supports_v4": True}},
            "node_replacements": True,
            "assets": False,
        },
        system={
            "comfyui_version": "0.27.0",
            "required_frontend_version": "1.45.20",
            "installed_templates_version": "0.11.2",
            "required_templates_version": "0.11.2",
            "comfy_package_versions": [
                {"name": "comfyui-frontend-package", "installed": "1.45.20", "required": "1.45.20"},
                {"name": "comfyui-workflow-templates", "installed": "0.11.2", "required": "0.11.2"},
                {"name": "comfyui-embedded-docs", "installed": "0.5.6", "required": "0.5.6"},
            ],
            "deploy_environment": "local-git",
        },
    ),
}
NEWEST = Emulate.V0_27

INVALID_PROMPT_ID = {
    "type": "invalid_prompt_id",
    "message": "prompt_id must be a valid UUID",
    "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
    "omit it to let the server generate one",
    "extra_info": {},
}


def canonical_uuid(value: object) -> bool:
    """True for a string that is a UUID in canonical lowercase hyphenated form."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# GET /node_replacements of 0.27.0 (old class -> replacements; the first one is applied).
# `input_mapping` entries either copy an old input (`old_id`) or set a value (`set_value`);
# without a mapping the new node gets no inputs at all, as the real server does.
NODE_REPLACEMENTS: dict[str, dict] = {
    "ResizeImagesByLongerEdge": {
        "new_node_id": "ImageScaleToMaxDimension",
        "old_widget_ids": ["longer_edge"],
        "input_mapping": [
            {"new_id": "image", "old_id": "images"},
            {"new_id": "largest_size", "old_id": "longer_edge"},
            {"new_id": "upscale_method", "set_value": "lanczos"},
        ],
        "output_mapping": [{"new_idx": 0, "old_idx": 0}],
    },
    "ImageBatch": {
        "new_node_id": "BatchImagesNode",
        "old_widget_ids": None,
        "input_mapping": [
            {"new_id": "images.image0", "old_id": "image1"},
            {"new_id": "images.image1", "old_id": "image2"},
        ],
        "output_mapping": None,
    },
    "ImageScaleBy": {
        "new_node_id": "ResizeImageMaskNode",
        "old_widget_ids": ["upscale_method", "scale_by"],
        "input_mapping": [
            {"new_id": "input", "old_id": "image"},
            {"new_id": "resize_type", "set_value": "scale by multiplier"},
            {"new_id": "resize_type.multiplier", "old_id": "scale_by"},
            {"new_id": "scale_method", "old_id": "upscale_method"},
        ],
        "output_mapping": None,
    },
    "T2IAdapterLoader": {
        "new_node_id": "ControlNetLoader",
        "old_widget_ids": None,
        "input_mapping": [{"new_id": "control_net_name", "old_id": "t2i_adapter_name"}],
        "output_mapping": None,
    },
    "Load3DAnimation": {
        "new_node_id": "Load3D",
        "old_widget_ids": None,
        "input_mapping": None,
        "output_mapping": None,
    },
    "Preview3DAnimation": {
        "new_node_id": "Preview3D",
        "old_widget_ids": None,
        "input_mapping": None,
        "output_mapping": None,
    },
    "SDV_img2vid_Conditioning": {
        "new_node_id": "SVD_img2vid_Conditioning",
        "old_widget_ids": None,
        "input_mapping": None,
        "output_mapping": None,
    },
    "ConditioningAverage ": {
        "new_node_id": "ConditioningAverage",
        "old_widget_ids": None,
        "input_mapping": None,
        "output_mapping": None,
    },
}


def apply_replacements(prompt: dict, known: dict) -> None:
    """Rewrite, in place, nodes whose class is unknown but has a replacement (0.27's rule).

    Only a node whose class the server lacks is replaced, and only by a class it has. The new
    node keeps `_meta`; links from it are re-pointed by `output_mapping`.
    """
    for node_id, node in list(prompt.items()):
        if not isinstance(node, dict) or "class_type" not in node or "inputs" not in node:
            continue
        rule = NODE_REPLACEMENTS.get(node["class_type"])
        if node["class_type"] in known or rule is None or rule["new_node_id"] not in known:
            continue
        inputs: dict = {}
        for mapping in rule["input_mapping"] or []:
            if "set_value" in mapping:
                inputs[mapping["new_id"]] = mapping["set_value"]
            elif mapping["old_id"] in node["inputs"]:
                inputs[mapping["new_id"]] = node["inputs"][mapping["old_id"]]
        prompt[node_id] = {**node, "class_type": rule["new_node_id"], "inputs": inputs}
        _remap_outputs(prompt, node_id, rule["output_mapping"] or [])


def _remap_outputs(prompt: dict, node_id: str, output_mapping: list[dict]) -> None:
    """Point links from a replaced node at its new output slots."""
    slots = {m["old_idx"]: m["new_idx"] for m in output_mapping}
    if not slots:
        return
    for other in prompt.values():
        for value in (other.get("inputs") or {}).values() if isinstance(other, dict) else ():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                value[1] = slots.get(value[1], value[1])
