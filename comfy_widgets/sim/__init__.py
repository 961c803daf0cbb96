"""A protocol-faithful simulated ComfyUI server (HTTP + WebSocket) for demos and tests.

    from comfy_widgets import sim
    with sim.serve() as server:          # background thread, own event loop
        print(server.url)
    server = await sim.start()           # inside a running loop
    await server.astop()
    sim.serve(emulate="0.3.64")          # speak ComfyUI 0.3.64 instead of 0.27 (the default)

`emulate` picks the version whose endpoints (`/api/jobs*` only in 0.27), prompt-id rules,
validation errors, node set (object_info) and feature flags are served; see versions.py.

Knobs: `server.settings.seconds_per_step` / `.seconds_per_node` / `.previews` (changeable while
running) and `server.faults`: `fail_node(class_type_or_id, times=1)`, `drop_sockets()`,
`malformed_frames(True)`, `send_malformed()`.

Restarts: `restart()` (`await arestart()` on the async server) is a real restart on the same
port: queue, running prompt, history and cache are lost, files on disk stay.
`restart(keep_state=True, down_for=s)` only takes the listener and sockets away for `s` seconds
(a network outage): prompts keep running and history is kept.
"""

from __future__ import annotations

from pathlib import Path

from comfy_widgets.extras import require

require("sim", "the simulated ComfyUI (comfy_widgets.sim)")

from comfy_widgets.sim.faults import Faults  # noqa: E402  (after the check for aiohttp)
from comfy_widgets.sim.handle import SimHandle  # noqa: E402
from comfy_widgets.sim.server import SimServer, SimSettings  # noqa: E402
from comfy_widgets.sim.versions import NEWEST, Emulate  # noqa: E402


def _settings(
    host: str,
    port: int,
    seconds_per_step: float,
    previews: bool,
    checkpoints: list[str] | None,
    loras: list[str] | None,
    models: dict[str, list[str]] | None,
    data_dir: str | Path | None,
    seconds_per_node: float,
    emulate: str | Emulate | None,
    front_end_root: str | Path | None = None,
    object_info_file: str | Path | None = None,
) -> SimSettings:
    extra = {folder: list(files) for folder, files in (models or {}).items()}
    extra.setdefault("checkpoints", []).extend(checkpoints or [])
    extra.setdefault("loras", []).extend(loras or [])
    return SimSettings(
        host=host,
        port=port,
        seconds_per_step=seconds_per_step,
        seconds_per_node=seconds_per_node,
        previews=previews,
        models=extra,
        data_dir=Path(data_dir) if data_dir else None,
        emulate=Emulate.parse(emulate),
        front_end_root=Path(front_end_root) if front_end_root else None,
        object_info_file=Path(object_info_file) if object_info_file else None,
    )


def serve(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    seconds_per_step: float = 0.05,
    previews: bool = True,
    checkpoints: list[str] | None = None,
    loras: list[str] | None = None,
    models: dict[str, list[str]] | None = None,
    data_dir: str | Path | None = None,
    seconds_per_node: float = 0.0,
    emulate: str | Emulate = NEWEST,
    front_end_root: str | Path | None = None,
    object_info_file: str | Path | None = None,
) -> SimHandle:
    """Start a simulated server in a daemon thread and return its handle (a context manager).

    `models` adds files to any model folder, e.g. {"vae": ["my_vae.safetensors"]}.
    `front_end_root` serves a web frontend (e.g. comfyui-frontend-package's `static` folder) at
    `/`, as ComfyUI's `--front-end-root`; `object_info_file` serves that /object_info instead of
    the bundled one (its model lists as they are).
    """
    return SimHandle(
        _settings(
            host,
            port,
            seconds_per_step,
            previews,
            checkpoints,
            loras,
            models,
            data_dir,
            seconds_per_node,
            emulate,
            front_end_root,
            object_info_file,
        )
    )


async def start(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    seconds_per_step: float = 0.05,
    previews: bool = True,
    checkpoints: list[str] | None = None,
    loras: list[str] | None = None,
    models: dict[str, list[str]] | None = None,
    data_dir: str | Path | None = None,
    seconds_per_node: float = 0.0,
    emulate: str | Emulate = NEWEST,
    front_end_root: str | Path | None = None,
    object_info_file: str | Path | None = None,
) -> SimServer:
    """Start a simulated server on the running event loop; stop it with `await server.astop()`."""
    server = SimServer(
        _settings(
            host,
            port,
            seconds_per_step,
            previews,
            checkpoints,
            loras,
            models,
            data_dir,
            seconds_per_node,
            emulate,
            front_end_root,
            object_info_file,
        )
    )
    return await server.start()


__all__ = ["Emulate", "Faults", "SimHandle", "SimServer", "SimSettings", "serve", "start"]
