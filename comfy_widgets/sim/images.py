"""Pictures drawn from generation parameters, so that every knob visibly changes the output.

As with a real model, the seed, prompt and size decide the composition (background gradient,
shape layout, palette, caption), while steps, cfg and the sampler only refine it: fewer steps
leave it soft and grainy, more steps add fine detail and sharpen it; cfg sets the contrast,
sampler_name and scheduler the grain and sharpness. So the same seed at 8 and at 24 steps is the
same picture with different detail, and a different seed or prompt is a different picture.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import textwrap
from functools import cache

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont
from PIL.PngImagePlugin import PngInfo

MAX_SIDE = 1024
PREVIEW_SIDE = 256
COMPOSITION_SHAPES = 18  # the layout: drawn from seed and prompt only
MAX_DETAILS = 120  # fine details: their number grows with steps


def output_size(width: object, height: object, cap: int = MAX_SIDE) -> tuple[int, int]:
    """(w, h) from the requested size, scaled down proportionally so the longer side <= cap."""
    w = max(1, int(width or 512))
    h = max(1, int(height or 512))
    scale = min(1.0, cap / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def palette(text: str, count: int = 6) -> list[tuple[int, int, int]]:
    """Colours derived from a hash of the prompt text (same text -> same palette)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [(digest[3 * i], digest[3 * i + 1], digest[3 * i + 2]) for i in range(count)]


def solid_color(color: int) -> tuple[int, int, int]:
    """ComfyUI's EmptyImage colour integer 0xRRGGBB as an RGB tuple."""
    color = int(color)
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def _gradient(size: tuple[int, int], rng: random.Random, colors: list) -> Image.Image:
    """A smooth 2x2 colour field scaled up to `size`."""
    corners = Image.new("RGB", (2, 2))
    corners.putdata([rng.choice(colors) for _ in range(4)])
    return corners.resize(size, Image.Resampling.BILINEAR)


def _shapes(image: Image.Image, rng: random.Random, colors: list, count: int, scale: float) -> None:
    """Draw `count` seeded ellipses and rectangles; `scale` sets their size (share of the side)."""
    draw = ImageDraw.Draw(image, "RGBA")
    w, h = image.size
    for _ in range(count):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.15, 1.0) * scale * min(w, h) + 1
        fill = (*rng.choice(colors), rng.randint(90, 220))
        box = (x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r)
        if rng.random() < 0.6:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)


@cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at a size (loading it is slow, so it is cached)."""
    return ImageFont.load_default(size=size)


def _caption(image: Image.Image, text: str, seed: int) -> None:
    """Write the prompt text and seed along the bottom edge."""
    w, h = image.size
    size = max(8, min(w, h) // 18)
    font = _font(size)
    chars = max(8, int(w / (size * 0.55)))
    lines = textwrap.wrap(text, chars)[:3] + [f"seed {seed}"]
    draw = ImageDraw.Draw(image, "RGBA")
    top = h - (len(lines) * (size + 2)) - 4
    draw.rectangle((0, top - 2, w, h), fill=(0, 0, 0, 110))
    for i, line in enumerate(lines):
        draw.text((4, top + i * (size + 2)), line, fill=(255, 255, 255, 230), font=font)


def _digest(text: str) -> int:
    """A stable number from a name (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def _refine(image: Image.Image, steps: int, sampler: str, scheduler: str, seed: int) -> Image.Image:
    """Detail, softness and grain from the sampling settings, on top of a fixed composition.

    Few steps: blurred and grainy; more steps: sharper, cleaner. The sampler picks the grain
    strength and the scheduler the sharpening, so both show without moving anything.
    """
    steps = max(1, steps)
    w, h = image.size
    radius = (1.0 + _digest(sampler) % 3) * min(w, h) / 512 * 4 / steps
    if radius > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    if _digest(scheduler) % 2:
        image = image.filter(ImageFilter.UnsharpMask(radius=2, percent=40 + 10 * (steps // 10)))
    amplitude = (6 + _digest(sampler) % 10) * 4 / steps**0.5
    grain = Image.frombytes("L", (w, h), random.Random(seed * 31 + 7).randbytes(w * h))
    grain = grain.point(lambda v: int(v * amplitude / 255))
    offset = -int(amplitude / 2)
    return Image.merge("RGB", [ImageChops.add(c, grain, 1.0, offset) for c in image.split()])


def render(params: dict, index: int = 0, cap: int = MAX_SIDE) -> Image.Image:
    """The picture for one generation (`index` is the position within the batch)."""
    size = output_size(params.get("width"), params.get("height"), cap)
    if "color" in params and not params.get("sampled"):
        return Image.new("RGB", size, solid_color(params["color"]))
    seed = int(params.get("seed", 0)) + index
    text = str(params.get("prompt", ""))
    colors = palette(text + "|" + str(params.get("negative", "")))
    layout = random.Random(f"{seed}|{text}")
    image = _gradient(size, layout, colors)
    _shapes(image, layout, colors, COMPOSITION_SHAPES, 0.25)
    steps = int(params.get("steps", 20))
    sampler = str(params.get("sampler_name", ""))
    # Fine details: the sampler decides where they go; more steps add more (the first n stay).
    details = random.Random(f"{seed}|{text}|{sampler}")
    _shapes(image, details, colors, min(MAX_DETAILS, 2 * steps), 0.02)
    image = _refine(image, steps, sampler, str(params.get("scheduler", "")), seed)
    cfg = float(params.get("cfg", 7.0))
    image = ImageEnhance.Contrast(image).enhance(max(0.2, min(3.0, 0.35 + cfg / 8)))
    if min(size) >= 48:
        _caption(image, text, seed)
    return image


class Previewer:
    """Sampler previews of one run: the small final picture emerging from seeded noise."""

    def __init__(self, final: Image.Image, seed: int) -> None:
        self.final = final
        rng = random.Random(seed)
        noise = Image.frombytes("RGB", (32, 32), rng.randbytes(32 * 32 * 3))
        noise = noise.resize(final.size, Image.Resampling.NEAREST)
        self.start = Image.blend(noise, Image.new("RGB", final.size, palette(str(seed))[0]), 0.35)

    def jpeg(self, step: int, total: int) -> bytes:
        """The preview at `step` of `total`, as JPEG bytes."""
        frame = Image.blend(self.start, self.final, max(0.0, min(1.0, step / max(1, total))))
        buf = io.BytesIO()
        frame.save(buf, format="JPEG", quality=85)
        return buf.getvalue()


def png_bytes(image: Image.Image, prompt: dict | None, extra_pnginfo: dict | None) -> bytes:
    """PNG bytes with ComfyUI's tEXt chunks: `prompt` and one chunk per extra_pnginfo key."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=1)  # ComfyUI: 4; 1 is 2x cheaper
    return buf.getvalue()


def webp_bytes(
    frames: list[Image.Image],
    fps: float,
    prompt: dict | None = None,
    extra_pnginfo: dict | None = None,
) -> bytes:
    """An animated WEBP of the frames with ComfyUI's EXIF metadata (SaveAnimatedWEBP):
    0x0110 (Model) = "prompt:<json>", then 0x010F (Make) downwards = "<key>:<json>" for each
    extra_pnginfo item (the workflow)."""
    exif = Image.Exif()
    if prompt is not None:
        exif[0x0110] = "prompt:" + json.dumps(prompt)
    for tag, (key, value) in zip(range(0x010F, 0, -1), (extra_pnginfo or {}).items(), strict=False):
        exif[tag] = f"{key}:{json.dumps(value)}"
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=int(1000 / max(0.01, float(fps))),
        lossless=False,
        quality=80,
        exif=exif,
    )
    return buf.getvalue()
