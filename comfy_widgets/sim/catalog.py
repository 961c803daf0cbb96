"""Model lists and the served object_info: the bundled snapshot with its file combos patched.

The recorded server had a single checkpoint, so the simulator serves every model file that the
workflows in the project's reference set (shared/workflows, also frontend-1.58) name, plus
whatever the caller adds.
"""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_OBJECT_INFO = "object_info_0.3.64.json.gz"  # ComfyUI 0.3.64 (object_info.json.gz is 0.27.0)

# Every file the reference workflows (ui, api and expected) name, by ComfyUI model folder.
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": [
        "512-inpainting-ema.safetensors",
        "DreamShaper_8_pruned.safetensors",
        "dreamshaper_8.safetensors",
        "hunyuan3d-dit-v2-mv_fp16.safetensors",
        "sdpose_wholebody_fp16.safetensors",
        "stable-audio-open-1.0.safetensors",
        "ltx-av-step-1751000_vocoder_24K.safetensors",
        "random_sd15.safetensors",
        "sd_xl_base_1.0.safetensors",
        "sd_xl_refiner_1.0.safetensors",
        "v1-5-pruned-emaonly-fp16.safetensors",
        "v1-5-pruned-emaonly.safetensors",
    ],
    "configs": [],
    "loras": [
        "MoXinV1.safetensors",
        "blindbox_v1_mix.safetensors",
        "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
        "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors",
    ],
    "vae": ["ae.safetensors", "full_encoder_small_decoder.safetensors", "wan_2.1_vae.safetensors"],
    "text_encoders": [
        "clip_g_hidream.safetensors",
        "clip_l.safetensors",
        "clip_l_hidream.safetensors",
        "llama_3.1_8b_instruct_fp8_scaled.safetensors",
        "qwen_3_4b.safetensors",
        "t5-base.safetensors",
        "t5xxl_fp16.safetensors",
        "t5xxl_fp8_e4m3fn_scaled.safetensors",
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    ],
    "diffusion_models": [
        "flux-2-klein-base-4b-fp8.safetensors",
        "flux1-dev.safetensors",
        "hidream_e1_1_bf16.safetensors",
        "rt_detr_v4-x-hgnet_fp16.safetensors",
        "wan2.2_fun_inpaint_high_noise_14B_fp8_scaled.safetensors",
        "wan2.2_fun_inpaint_low_noise_14B_fp8_scaled.safetensors",
        "z_image_turbo_bf16.safetensors",
    ],
    "clip_vision": ["sigclip_vision_patch14_384.safetensors"],
    "style_models": ["flux1-redux-dev.safetensors"],
    "embeddings": [],
    "diffusers": [],
    "vae_approx": [],
    "controlnet": [],
    "gligen": [],
    "upscale_models": ["RealESRGAN_x4plus.pth"],
    "custom_nodes": [],
    "hypernetworks": [],
    "photomaker": [],
    "classifiers": [],
    "model_patches": [],
    "audio_encoders": [],
}
# Model folders 0.3.64 does not have.
NEWER_MODELS: dict[str, list[str]] = {
    "geometry_estimation": ["moge_2_vitl_normal_fp16.safetensors"],
}

# Input images the reference workflows load (LoadImage), created at start-up in the input folder.
DEFAULT_INPUT_IMAGES = [
    "3d_hunyuan3d_multiview_to_model_back_image.png",
    "3d_hunyuan3d_multiview_to_model_front_image.png",
    "black_coat_model.png",
    "chasing_the_light.png",
    "example.png",
    "fluffy_beige_sofa.png",
    "flux_redux_model_example_reference_image_1.png",
    "flux_redux_model_example_reference_image_2.png",
    "group_photo.png",
    "hidream_e1_1_input_image.jpg",
    "ice_cold_pup.png",
    "image2image_input_image.jpg",
    "inpaint_example_input_image.png",
    "latent_space_clud.png",
    "lego_street_panorama.png",
    "minimalist_wooden_sofa_living_room.png",
    "pink_tone_chair.png",
    "robed_women.png",
    "sunlit_rooftop_capture.png",
    "video_wan2_2_14B_fun_inpaint_end_image.png",
    "video_wan2_2_14B_fun_inpaint_start_image.png",
]

# Which combo input of which node lists which model folder (ComfyUI's loaders).
COMBO_FOLDERS: dict[tuple[str, str], str] = {
    **{
        (c, "ckpt_name"): "checkpoints"
        for c in (
            "CheckpointLoaderSimple",
            "CheckpointLoader",
            "unCLIPCheckpointLoader",
            "ImageOnlyCheckpointLoader",
            "CreateHookModelAsLora",
            "CreateHookModelAsLoraModelOnly",
        )
    },
    **{
        (c, "lora_name"): "loras"
        for c in ("LoraLoader", "LoraLoaderModelOnly", "CreateHookLora", "CreateHookLoraModelOnly")
    },
    ("VAELoader", "vae_name"): "vae",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    **{("DualCLIPLoader", f"clip_name{i}"): "text_encoders" for i in (1, 2)},
    **{("TripleCLIPLoader", f"clip_name{i}"): "text_encoders" for i in (1, 2, 3)},
    **{("QuadrupleCLIPLoader", f"clip_name{i}"): "text_encoders" for i in (1, 2, 3, 4)},
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("ModelPatchLoader", "name"): "model_patches",
    ("LoadMoGeModel", "model_name"): "geometry_estimation",
}

IMAGE_COMBOS = {("LoadImage", "image"), ("LoadImageMask", "image")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


@cache
def bundled_object_info(file_name: str = DEFAULT_OBJECT_INFO) -> dict:
    """A recorded server's /object_info from comfy_widgets/data (read once, shared: read-only)."""
    with gzip.open(DATA_DIR / file_name, "rt", encoding="utf-8") as f:
        return json.load(f)


def read_object_info(path: str | Path) -> dict:
    """An /object_info document from a .json or .json.gz file (ValueError naming the problem)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as ex:
        raise ValueError(f"object_info file {path}: {ex}") from ex
    if not isinstance(info, dict):
        raise ValueError(f"object_info file {path}: not a JSON object")
    return info


def model_lists(
    extra: dict[str, list[str]] | None = None, newer: bool = True
) -> dict[str, list[str]]:
    """Default model lists (with 0.27's folders when `newer`) merged with `extra`, each sorted
    like ComfyUI's get_filename_list."""
    defaults = {**DEFAULT_MODELS, **(NEWER_MODELS if newer else {})}
    merged = {folder: set(files) for folder, files in defaults.items()}
    for folder, files in (extra or {}).items():
        merged.setdefault(folder, set()).update(files)
    return {folder: sorted(files) for folder, files in merged.items()}


def input_image_names(input_dir: Path) -> list[str]:
    """Image files in the input folder, sorted, as LoadImage lists them."""
    if not input_dir.is_dir():
        return []
    return sorted(
        p.name for p in input_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _set_options(spec: list, options: list[str], keep_tail: bool) -> None:
    """Replace a combo spec's option list in place (old `[[...], {...}]` or new COMBO form)."""
    if isinstance(spec[0], list):
        tail = [o for o in spec[0] if o not in options] if keep_tail else []
        spec[0] = options + tail
    elif spec[0] == "COMBO" and len(spec) > 1:
        spec[1]["options"] = options


def served_object_info(
    models: dict[str, list[str]], input_images: list[str], file_name: str = DEFAULT_OBJECT_INFO
) -> dict:
    """The bundled object_info with model and input-image combos filled in.

    Only the patched classes are copied; the others are shared with the bundled snapshot, so
    the result must be treated as read-only.
    """
    bundled = bundled_object_info(file_name)
    info = dict(bundled)
    for class_type in {c for c, _ in COMBO_FOLDERS} | {c for c, _ in IMAGE_COMBOS}:
        if class_type in bundled:
            info[class_type] = copy.deepcopy(bundled[class_type])
    for (class_type, name), folder in COMBO_FOLDERS.items():
        spec = _combo_spec(info, class_type, name)
        if spec is not None:
            # VAELoader also lists built-in approximations (taesd, pixel_space): keep them last.
            _set_options(spec, list(models.get(folder, [])), keep_tail=class_type == "VAELoader")
    for class_type, name in IMAGE_COMBOS:
        spec = _combo_spec(info, class_type, name)
        if spec is not None:
            _set_options(spec, list(input_images), keep_tail=False)
    return info


def _combo_spec(info: dict, class_type: str, name: str) -> list | None:
    """The input spec list of `class_type.name`, or None if the class or input is absent."""
    node = info.get(class_type)
    if node is None:
        return None
    for category in ("required", "optional"):
        spec = node["input"].get(category, {}).get(name)
        if spec is not None:
            return spec
    return None
