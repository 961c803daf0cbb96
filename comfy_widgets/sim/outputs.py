"""Output nodes: files written to the output/temp folders and the `ui` dict ComfyUI reports.

File names follow ComfyUI (`<prefix>_00001_.png`, counters continue from what is on disk;
PreviewImage uses a random `ComfyUI_temp_xxxxx_` prefix). Video savers write an animated WebP
named `.webp` (what it is: the simulator has no video encoder) with the prompt and workflow in
its EXIF, as ComfyUI's SaveAnimatedWEBP stores them; audio savers write a short WAV.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import time
import wave
from pathlib import Path

from comfy_widgets.sim import images

MAX_BATCH = 16
IMAGE_SAVERS = {"SaveImage": "output", "PreviewImage": "temp"}
VIDEO_SAVERS = ("SaveAnimatedWEBP", "SaveWEBM", "SaveVideo")
AUDIO_SAVERS = {
    "SaveAudio": "output",
    "SaveAudioMP3": "output",
    "SaveAudioOpus": "output",
    "PreviewAudio": "temp",
}
AUDIO_EXT = {"SaveAudioMP3": "mp3", "SaveAudioOpus": "opus"}
TEXT_NODES = {"PreviewAny"}


TEMP_LETTERS = "abcdefghijklmnopqrstupvxyz"  # the alphabet PreviewImage draws from


def random_temp_prefix() -> str:
    """PreviewImage's `_temp_` plus five random letters."""
    return "_temp_" + "".join(random.choice(TEMP_LETTERS) for _ in range(5))


def _expand(prefix: str, width: int, height: int) -> str:
    """ComfyUI's %width%, %height% and date variables in a filename prefix."""
    now = time.localtime()
    for key, value in (
        ("%width%", width),
        ("%height%", height),
        ("%year%", now.tm_year),
        ("%month%", f"{now.tm_mon:02}"),
        ("%day%", f"{now.tm_mday:02}"),
        ("%hour%", f"{now.tm_hour:02}"),
        ("%minute%", f"{now.tm_min:02}"),
        ("%second%", f"{now.tm_sec:02}"),
    ):
        prefix = prefix.replace(key, str(value))
    return prefix


def save_target(prefix: str, base: Path, width: int = 0, height: int = 0) -> tuple[Path, str, str]:
    """(folder, file stem, subfolder) like folder_paths.get_save_image_path, folder created.

    Raises ComfyUI's exception when the prefix points outside the folder.
    """
    if "%" in prefix:
        prefix = _expand(prefix, width, height)
    base_str = os.path.abspath(base)
    norm = os.path.normpath(prefix)
    subfolder = os.path.dirname(norm)
    stem = os.path.basename(norm)
    folder = os.path.abspath(os.path.join(base_str, subfolder))
    common = os.path.commonpath((base_str, folder))
    if common != base_str:
        raise Exception(  # noqa: TRY002 - ComfyUI raises a bare Exception here
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {base_str}"
            f"\n         commonpath: {common}"
        )
    if not os.path.isdir(folder):  # makedirs on an existing folder raises and catches inside
        os.makedirs(folder, exist_ok=True)
    return Path(folder), stem, subfolder


def max_counter(folder: Path, stem: str) -> int:
    """The highest counter of the `<stem>_<n>_...` files in the folder (0 if none)."""
    pattern = re.compile(re.escape(stem) + r"_(\d+)_")
    return max(
        (int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name)) is not None),
        default=0,
    )


def save_path(
    prefix: str, base: Path, width: int = 0, height: int = 0
) -> tuple[Path, str, int, str]:
    """(folder, file stem, next counter, subfolder): counters continue from what is on disk."""
    folder, stem, subfolder = save_target(prefix, base, width, height)
    return folder, stem, max_counter(folder, stem) + 1, subfolder


class OutputWriter:
    """Writes the files of output nodes into a server's output and temp folders."""

    def __init__(self, output_dir: Path, temp_dir: Path) -> None:
        self.dirs = {"output": output_dir, "temp": temp_dir}
        self.temp_prefix = random_temp_prefix()

    def run(
        self, class_type: str, params: dict, inputs: dict, prompt: dict, extra_pnginfo: dict | None
    ) -> dict | None:
        """Write the node's files; returns its ui dict, or None for nodes without one."""
        if class_type in IMAGE_SAVERS:
            kind = IMAGE_SAVERS[class_type]
            prefix = str(inputs.get("filename_prefix", "ComfyUI"))
            if kind == "temp":
                prefix = "ComfyUI" + self.temp_prefix
            return {"images": self._images(params, prefix, kind, prompt, extra_pnginfo)}
        if class_type in VIDEO_SAVERS:
            return self._video(class_type, params, inputs, prompt, extra_pnginfo)
        if class_type in AUDIO_SAVERS:
            return self._audio(class_type, params, inputs)
        if class_type in TEXT_NODES:
            return {"text": [_as_text(inputs.get("source"))]}
        return None

    def _frames(self, params: dict) -> list:
        count = max(1, min(MAX_BATCH, int(params.get("batch_size", 1))))
        return [images.render(params, index=i) for i in range(count)]

    def _images(
        self, params: dict, prefix: str, kind: str, prompt: dict, extra_pnginfo: dict | None
    ) -> list[dict]:
        frames = self._frames(params)
        w, h = frames[0].size
        folder, stem, counter, subfolder = save_path(prefix, self.dirs[kind], w, h)
        results = []
        for offset, frame in enumerate(frames):
            name = f"{stem.replace('%batch_num%', str(offset))}_{counter + offset:05}_.png"
            (folder / name).write_bytes(images.png_bytes(frame, prompt, extra_pnginfo))
            results.append({"filename": name, "subfolder": subfolder, "type": kind})
        return results

    def _video(
        self,
        class_type: str,
        params: dict,
        inputs: dict,
        prompt: dict,
        extra_pnginfo: dict | None,
    ) -> dict:
        frames = self._frames(params)
        prefix = str(inputs.get("filename_prefix", "ComfyUI"))
        folder, stem, counter, subfolder = save_path(prefix, self.dirs["output"], *frames[0].size)
        name = f"{stem}_{counter:05}_.webp"
        fps = float(params.get("fps", 6.0))
        (folder / name).write_bytes(images.webp_bytes(frames, fps, prompt, extra_pnginfo))
        # SaveAnimatedWEBP reports a single frame as not animated; the video savers never do.
        animated = len(frames) != 1 or class_type != "SaveAnimatedWEBP"
        return {
            "images": [{"filename": name, "subfolder": subfolder, "type": "output"}],
            "animated": [animated],
        }

    def _audio(self, class_type: str, params: dict, inputs: dict) -> dict:
        kind = AUDIO_SAVERS[class_type]
        prefix = str(inputs.get("filename_prefix", "audio/ComfyUI"))
        if kind == "temp":
            prefix = "ComfyUI" + self.temp_prefix
        folder, stem, counter, subfolder = save_path(prefix, self.dirs[kind])
        name = f"{stem}_{counter:05}_.{AUDIO_EXT.get(class_type, 'flac')}"
        (folder / name).write_bytes(_tone_wav(int(params.get("seed", 0))))
        return {"audio": [{"filename": name, "subfolder": subfolder, "type": kind}]}


def _as_text(value: object) -> str:
    """PreviewAny's rendering: strings as-is, numbers with str(), the rest as JSON."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _tone_wav(seed: int, seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A short seeded square-wave tone as WAV bytes."""
    period = max(4, 8 + seed % 40)
    samples = bytes(200 if (i // period) % 2 else 56 for i in range(int(seconds * rate)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(samples)
    return buf.getvalue()
