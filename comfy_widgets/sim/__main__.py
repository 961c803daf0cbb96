"""`python -m comfy_widgets.sim`: run the simulated ComfyUI server in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from comfy_widgets.sim import frontend, start
from comfy_widgets.sim.versions import NEWEST, Emulate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m comfy_widgets.sim", description="Simulated ComfyUI server."
    )
    p.add_argument(
        "--emulate",
        choices=[v.value for v in Emulate],
        default=NEWEST.value,
        help="ComfyUI version to speak: endpoints, validation errors, node set "
        f"(default {NEWEST.value})",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--seconds-per-step", type=float, default=0.1)
    p.add_argument("--seconds-per-node", type=float, default=0.0)
    p.add_argument("--no-previews", action="store_true", help="send no binary previews")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder for input/output/temp (default: a temporary folder)",
    )
    p.add_argument(
        "--front-end-root",
        default=None,
        metavar="DIR",
        help="serve this web frontend at / (e.g. comfyui-frontend-package's static folder;"
        " 'package' for the installed one)",
    )
    p.add_argument(
        "--object-info",
        default=None,
        metavar="FILE",
        help="serve this /object_info (.json or .json.gz) instead of the bundled one",
    )
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME")
    p.add_argument("--lora", action="append", default=[], metavar="NAME")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FOLDER/NAME",
        help="any model file, e.g. vae/my_vae.safetensors",
    )
    return p.parse_args(argv)


def extra_models(specs: list[str]) -> dict[str, list[str]]:
    """`folder/name` strings as {folder: [names]}."""
    models: dict[str, list[str]] = {}
    for spec in specs:
        folder, _, name = spec.partition("/")
        if not name:
            raise SystemExit(f"--model needs FOLDER/NAME, got {spec!r}")
        models.setdefault(folder, []).append(name)
    return models


def _front_end_root(value: str | None) -> Path | None:
    """The checked front-end root ('package': the installed comfyui-frontend-package)."""
    if value is None:
        return None
    try:
        return frontend.package_root() if value == "package" else frontend.check_root(value)
    except frontend.FrontendError as ex:
        raise SystemExit(str(ex)) from None


async def _main(args: argparse.Namespace) -> None:
    server = await start(
        args.port,
        host=args.host,
        seconds_per_step=args.seconds_per_step,
        previews=not args.no_previews,
        checkpoints=args.checkpoint,
        loras=args.lora,
        models=extra_models(args.model),
        data_dir=args.data_dir,
        seconds_per_node=args.seconds_per_node,
        emulate=args.emulate,
        front_end_root=_front_end_root(args.front_end_root),
        object_info_file=args.object_info,
    )
    print(
        f"Simulated ComfyUI {server.profile.full_version} listening on {server.url} "
        f"(data in {server.root})",
        flush=True,
    )
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await server.astop()


def main(argv: list[str] | None = None) -> None:
    """Run until interrupted (Ctrl+C)."""
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_main(parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
