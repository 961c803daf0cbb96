"""HTTP routes of the simulated server, each also under /api, answering as ComfyUI 0.3.64 does.

A body that is not JSON makes a handler raise, and aiohttp answers 500 "Server got itself in
trouble" in text/plain, which is exactly what ComfyUI (also aiohttp) sends.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import platform
import sys
import uuid
from typing import TYPE_CHECKING

from aiohttp import web
from PIL import Image

from comfy_widgets.sim.jobs_cancel import add_cancel_routes
from comfy_widgets.sim.validation import validate_prompt

if TYPE_CHECKING:
    from comfy_widgets.sim.server import SimServer

EXTENSIONS = [
    "/extensions/core/groupNode.js",
    "/extensions/core/clipspace.js",
    "/extensions/core/widgetInputs.js",
]
FORCE_DOWNLOAD = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}
VERSION = "0.3.64"
FILE_CONDITIONS = (
    "Range",
    "If-Range",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
)  # requests left to web.FileResponse
SMALL_FILE = 4 << 20  # larger files are streamed by web.FileResponse, off the loop
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _prompt_error(error: dict, node_errors: dict | None = None) -> web.Response:
    return _json({"error": error, "node_errors": node_errors or {}}, status=400)


def _annotation(name: str) -> tuple[str, str | None]:
    """Split ComfyUI's `name [output]` / `[input]` / `[temp]` annotation off a file name."""
    for kind in ("output", "input", "temp"):
        if name.endswith(f"[{kind}]"):
            return name[: -len(kind) - 3], kind
    return name, None


def _preview(path: str, name: str, spec: str) -> web.Response:
    """GET /view?preview=webp;90 (or jpeg;Q): the image re-encoded, as ComfyUI does."""
    parts = spec.split(";")
    image_format = parts[0] if parts[0] in ("webp", "jpeg") else "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    with Image.open(path) as image:
        buf = io.BytesIO()
        (image.convert("RGB") if image_format == "jpeg" else image).save(
            buf, format=image_format, quality=quality
        )
    return web.Response(
        body=buf.getvalue(),
        content_type=f"image/{image_format}",
        headers={"Content-Disposition": f'filename="{name}"'},
    )


def _file_response(request: web.Request, path: str, headers: dict) -> web.StreamResponse:
    """The file exactly as web.FileResponse sends it (same headers, in the same order).

    A small file asked for without range, condition or a pre-compressed sibling is read here:
    FileResponse's two executor round trips and sendfile cost ~1 ms of CPU per image.
    """
    if any(name in request.headers for name in FILE_CONDITIONS) or any(
        os.path.lexists(path + ext) for ext in (".br", ".gz")
    ):
        return web.FileResponse(path, headers=headers)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > SMALL_FILE:
                return web.FileResponse(path, headers=headers)
            body = f.read()
    except OSError:
        return web.FileResponse(path, headers=headers)
    response = web.Response(body=body, headers=headers)
    response.etag = f"{st.st_mtime_ns:x}-{st.st_size:x}"
    response.last_modified = st.st_mtime
    response.headers["Accept-Ranges"] = "bytes"
    return response


class Routes:
    """The request handlers of one SimServer."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    # -- prompts and queue ----------------------------------------------------------------
    async def get_prompt(self, request: web.Request) -> web.Response:
        """GET /prompt: the queue count."""
        return _json(self.server.queue_info())

    async def post_prompt(self, request: web.Request) -> web.Response:
        """POST /prompt: number the prompt, validate it and queue it (or answer 400)."""
        server = self.server
        data = await request.json()
        if "number" in data:
            number = float(data["number"])
        else:
            number = server.number
            if "front" in data and data["front"]:
                number = -number
            server.number += 1
        if "prompt" not in data:
            return _prompt_error(
                {
                    "type": "no_prompt",
                    "message": "No prompt provided",
                    "details": "No prompt provided",
                    "extra_info": {},
                }
            )
        prompt = data["prompt"]
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        targets = data.get("partial_execution_targets")
        result = validate_prompt(prompt, server.object_info(), server.input_file_exists, targets)
        if not result.ok:
            return _prompt_error(result.error, result.node_errors)
        extra_data = dict(data.get("extra_data", {}))
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        server.enqueue(number, prompt_id, prompt, extra_data, result.outputs)
        return _json({"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors})

    async def get_queue(self, request: web.Request) -> web.Response:
        """GET /queue: running and pending items."""
        return _json(self.server.queue.snapshot())

    async def post_queue(self, request: web.Request) -> web.Response:
        """POST /queue: {"clear": true} and/or {"delete": [prompt_id, ...]}."""
        data = await request.json()
        if "clear" in data and data["clear"]:
            self.server.queue.clear()
        if "delete" in data:
            self.server.queue.delete(list(data["delete"]))
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        """POST /interrupt: stop the running prompt (only if it is the given prompt_id)."""
        try:
            data = await request.json()
        except json.JSONDecodeError:
            data = {}
        self.server.interrupt(data.get("prompt_id"))
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        """POST /free: {"free_memory": true} forgets the node cache."""
        data = await request.json()
        if data.get("free_memory", False):
            self.server.free_memory()
        return web.Response(status=200)

    # -- history --------------------------------------------------------------------------
    async def get_history(self, request: web.Request) -> web.Response:
        """GET /history: entries oldest first, optionally max_items and offset."""
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return _json(self.server.queue.get_history(max_items=max_items, offset=offset))

    async def get_history_item(self, request: web.Request) -> web.Response:
        """GET /history/{prompt_id}: one entry, or {} if unknown."""
        return _json(self.server.queue.get_history(request.match_info["prompt_id"]))

    async def post_history(self, request: web.Request) -> web.Response:
        """POST /history: {"clear": true} and/or {"delete": [prompt_id, ...]}."""
        data = await request.json()
        if "clear" in data and data["clear"]:
            self.server.queue.wipe_history()
        for prompt_id in data.get("delete", []):
            self.server.queue.delete_history(prompt_id)
        return web.Response(status=200)

    # -- files ----------------------------------------------------------------------------
    async def view(self, request: web.Request) -> web.StreamResponse:
        """GET /view: a file from the output, input or temp folder (optionally re-encoded)."""
        query = request.rel_url.query
        name = query.get("filename")
        if name is None:
            return web.Response(status=404)
        name, kind = _annotation(name)
        if not name or name[0] == "/" or ".." in name:
            return web.Response(status=400)
        base = self.server.folder(kind or query.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        folder = os.path.abspath(base)
        if "subfolder" in query:
            wanted = os.path.abspath(os.path.join(folder, query["subfolder"]))
            if os.path.commonpath((wanted, folder)) != folder:
                return web.Response(status=403)
            folder = wanted
        name = os.path.basename(name)
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return web.Response(status=404)
        if "preview" in query:
            return _preview(path, name, query["preview"])
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type in FORCE_DOWNLOAD:
            content_type = "application/octet-stream"
        return _file_response(
            request,
            path,
            {"Content-Disposition": f'filename="{name}"', "Content-Type": content_type},
        )

    async def upload_image(self, request: web.Request) -> web.Response:
        """POST /upload/image: store a multipart image (renamed or reused on a clash)."""
        post = await request.post()
        image = post.get("image")
        if image is None or not hasattr(image, "file") or not image.filename:
            return web.Response(status=400)
        kind = post.get("type") or "input"
        base = self.server.folder(kind)
        if base is None:
            return web.Response(status=400)
        base_str = os.path.abspath(base)
        subfolder = str(post.get("subfolder", ""))
        folder = os.path.join(base_str, os.path.normpath(subfolder))
        filename = image.filename
        path = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((base_str, path)) != base_str:
            return web.Response(status=400)
        os.makedirs(folder, exist_ok=True)
        content = image.file.read()
        if post.get("overwrite") not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            i = 1
            while os.path.exists(path):
                if open(path, "rb").read() == content:  # same bytes: reuse the file
                    return _json({"name": filename, "subfolder": subfolder, "type": kind})
                filename = f"{stem} ({i}){ext}"
                path = os.path.join(folder, filename)
                i += 1
        with open(path, "wb") as f:
            f.write(content)
        return _json({"name": filename, "subfolder": subfolder, "type": kind})

    # -- server information ---------------------------------------------------------------
    async def object_info(self, request: web.Request) -> web.Response:
        """GET /object_info: every node class, with the served model lists."""
        return web.Response(
            body=self.server.object_info_body(), content_type="application/json", charset="utf-8"
        )

    async def object_info_one(self, request: web.Request) -> web.Response:
        """GET /object_info/{class}: one node class, or {} if unknown."""
        name = request.match_info["node_class"]
        info = self.server.object_info()
        return _json({name: info[name]} if name in info else {})

    async def system_stats(self, request: web.Request) -> web.Response:
        """GET /system_stats: a simulated machine in the recorded shape."""
        total = 16 * 1024**3
        return _json(
            {
                "system": {
                    "os": os.name,
                    "ram_total": total,
                    "ram_free": total // 2,
                    "comfyui_version": VERSION,
                    "required_frontend_version": "1.27.10",
                    "installed_templates_version": "0.1.95",
                    "required_templates_version": "0.1.95",
                    "python_version": sys.version,
                    "pytorch_version": "simulated",
                    "embedded_python": False,
                    "argv": ["comfy_widgets.sim", "--port", str(self.server.port)],
                },
                "devices": [
                    {
                        "name": f"simulated {platform.machine()} cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": total,
                        "vram_free": total // 2,
                        "torch_vram_total": total,
                        "torch_vram_free": total // 2,
                    }
                ],
            }
        )

    async def features(self, request: web.Request) -> web.Response:
        """GET /features: the server feature flags."""
        return _json(SERVER_FEATURES)

    async def embeddings(self, request: web.Request) -> web.Response:
        """GET /embeddings: embedding names without extension."""
        names = self.server.models().get("embeddings", [])
        return _json([os.path.splitext(name)[0] for name in names])

    async def model_folders(self, request: web.Request) -> web.Response:
        """GET /models: the model folder names."""
        return _json(list(self.server.models()))

    async def model_files(self, request: web.Request) -> web.Response:
        """GET /models/{folder}: the files of a folder, 404 for an unknown one."""
        folder = request.match_info["folder"]
        models = self.server.models()
        if folder not in models:
            return web.Response(status=404)
        return _json(models[folder])

    async def extensions(self, request: web.Request) -> web.Response:
        """GET /extensions: frontend extension scripts."""
        return _json(EXTENSIONS)

    async def index(self, request: web.Request) -> web.Response:
        """GET /: a plain-text greeting (there is no web frontend)."""
        return web.Response(
            text="comfy_widgets simulated ComfyUI " + VERSION, content_type="text/plain"
        )


def build_app(server: SimServer) -> web.Application:
    """The aiohttp application with every route, also under /api."""
    r = Routes(server)
    table = [
        ("GET", "/ws", server.websocket),
        ("GET", "/prompt", r.get_prompt),
        ("POST", "/prompt", r.post_prompt),
        ("GET", "/queue", r.get_queue),
        ("POST", "/queue", r.post_queue),
        ("POST", "/interrupt", r.post_interrupt),
        ("POST", "/free", r.post_free),
        ("GET", "/history", r.get_history),
        ("GET", "/history/{prompt_id}", r.get_history_item),
        ("POST", "/history", r.post_history),
        ("GET", "/view", r.view),
        ("POST", "/upload/image", r.upload_image),
        ("GET", "/object_info", r.object_info),
        ("GET", "/object_info/{node_class}", r.object_info_one),
        ("GET", "/system_stats", r.system_stats),
        ("GET", "/features", r.features),
        ("GET", "/embeddings", r.embeddings),
        ("GET", "/models", r.model_folders),
        ("GET", "/models/{folder}", r.model_files),
        ("GET", "/extensions", r.extensions),
    ]
    app = web.Application(client_max_size=104857600)
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    app.router.add_route("GET", "/", r.index)
    add_cancel_routes(app, server)
    return app
