"""HTTP routes of the simulated server, each also under /api, answering as the emulated ComfyUI
version does (0.3.64 or 0.27: see versions.py).

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
import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import web
from PIL import Image

from comfy_widgets.sim import jobs
from comfy_widgets.sim.validation import validate_prompt
from comfy_widgets.sim.versions import (
    INVALID_PROMPT_ID,
    NODE_REPLACEMENTS,
    apply_replacements,
    canonical_uuid,
)

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
JOB_SORTS = ("created_at", "execution_duration")


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
        profile = server.profile
        if not profile.strict_prompt_id:  # 0.3.64 keeps any id as a string (even None)
            prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        elif data.get("prompt_id") is None:
            prompt_id = str(uuid.uuid4())
        elif canonical_uuid(data["prompt_id"]):
            prompt_id = data["prompt_id"]
        else:
            return _prompt_error(INVALID_PROMPT_ID)
        info = server.object_info()
        if profile.node_replacement:
            apply_replacements(prompt, info)
        targets = data.get("partial_execution_targets")
        result = validate_prompt(
            prompt, info, server.input_file_exists, targets, server.settings.emulate
        )
        if not result.ok:
            return _prompt_error(result.error, result.node_errors)
        extra_data = dict(data.get("extra_data", {}))
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        if profile.create_time:
            extra_data["create_time"] = int(time.time() * 1000)
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

    # -- jobs (0.27) ----------------------------------------------------------------------
    async def get_jobs(self, request: web.Request) -> web.Response:
        """GET /api/jobs: every job, filtered by status, sorted, paginated."""
        query = request.rel_url.query
        statuses = [v.value for v in jobs.JobStatus]
        wanted = statuses
        if query.get("status"):
            wanted = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
            invalid = [s for s in wanted if s not in statuses]
            if invalid:
                return _json(
                    {
                        "error": f"Invalid status value(s): {', '.join(invalid)}. "
                        f"Valid values: {', '.join(statuses)}"
                    },
                    400,
                )
        sort_by = query.get("sort_by", "created_at").lower()
        if sort_by not in JOB_SORTS:
            return _json({"error": "sort_by must be 'created_at' or 'execution_duration'"}, 400)
        sort_order = query.get("sort_order", "desc").lower()
        if sort_order not in ("asc", "desc"):
            return _json({"error": "sort_order must be 'asc' or 'desc'"}, 400)
        limit = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return _json({"error": "limit must be an integer"}, 400)
            if limit <= 0:
                return _json({"error": "limit must be a positive integer"}, 400)
        try:
            offset = max(0, int(query.get("offset", 0)))
        except ValueError:
            return _json({"error": "offset must be an integer"}, 400)
        queue = self.server.queue
        found = [
            j
            for j in jobs.all_jobs(
                list(queue.running.values()), queue.pending, queue.history, wanted
            )
            if not query.get("workflow_id") or j.get("workflow_id") == query["workflow_id"]
        ]
        found.sort(key=jobs.sort_key(sort_by), reverse=sort_order == "desc")
        page = found[offset:]
        page = page[:limit] if limit is not None else page
        pagination = {
            "offset": offset,
            "limit": limit,
            "total": len(found),
            "has_more": offset + len(page) < len(found),
        }
        return _json({"jobs": page, "pagination": pagination})

    async def get_job(self, request: web.Request) -> web.Response:
        """GET /api/jobs/{job_id}: one job with its outputs, or 404."""
        job_id = request.match_info["job_id"]
        queue = self.server.queue
        if job_id in queue.history:
            return _json(jobs.history_job(job_id, queue.history[job_id], full=True))
        for item in queue.running.values():
            if item[1] == job_id:
                return _json(jobs.queue_job(item, jobs.JobStatus.IN_PROGRESS))
        for item in queue.pending:
            if item[1] == job_id:
                return _json(jobs.queue_job(item, jobs.JobStatus.PENDING))
        return _json({"error": "Job not found"}, 404)

    def _cancel(self, job_id: str) -> bool:
        """Interrupt the job if it runs, dequeue it if it waits; False if neither."""
        queue = self.server.queue
        if job_id in queue.running_ids():
            self.server.interrupt(job_id)
            return True
        if any(item[1] == job_id for item in queue.pending):
            queue.delete([job_id])
            return True
        return False

    async def cancel_job(self, request: web.Request) -> web.Response:
        """POST /api/jobs/{job_id}/cancel: `{"cancelled": bool}`, 200 even for unknown ids."""
        return _json({"cancelled": self._cancel(request.match_info["job_id"])})

    async def cancel_jobs(self, request: web.Request) -> web.Response:
        """POST /api/jobs/cancel {"job_ids": [...]}: best effort; malformed ids are a 400."""
        try:
            data = await request.json()
        except json.JSONDecodeError:
            return _json({"error": "Request body must be valid JSON"}, 400)
        job_ids = data.get("job_ids") if isinstance(data, dict) else None
        if not isinstance(job_ids, list):
            return _json({"error": "job_ids must be a list"}, 400)
        invalid = [j if isinstance(j, str) else repr(j) for j in job_ids if not canonical_uuid(j)]
        if invalid:
            return _json({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, 400)
        results = [self._cancel(job_id) for job_id in job_ids]
        return _json({"cancelled": any(results)})

    async def node_replacements(self, request: web.Request) -> web.Response:
        """GET /node_replacements (0.27): old class -> [replacement, ...]."""
        table = {old: [{**rule, "old_node_id": old}] for old, rule in NODE_REPLACEMENTS.items()}
        return _json(table)

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
        return web.FileResponse(
            path,
            headers={"Content-Disposition": f'filename="{name}"', "Content-Type": content_type},
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
                    **self.server.profile.system,
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
        return _json(self.server.profile.features)

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
            text="comfy_widgets simulated ComfyUI " + self.server.profile.full_version,
            content_type="text/plain",
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
    if server.profile.jobs_api:
        table += [
            # registered as /api/jobs..., so the /api copy is /api/api/jobs and /jobs is a 404
            ("GET", "/api/jobs", r.get_jobs),
            ("GET", "/api/jobs/{job_id}", r.get_job),
            ("POST", "/api/jobs/{job_id}/cancel", r.cancel_job),
            ("POST", "/api/jobs/cancel", r.cancel_jobs),
            ("GET", "/node_replacements", r.node_replacements),
        ]
    app = web.Application(client_max_size=104857600)
    for method, path, handler in table:
        app.router.add_route(method, "/api" + path, handler)
        app.router.add_route(method, path, handler)
    for hook in server.route_hooks:  # e.g. serving a real frontend: its routes win over "/"
        hook(app)
    app.router.add_route("GET", "/", r.index)
    return app
