"""Serve a real ComfyUI web frontend from the simulator, as ComfyUI's `--front-end-root` does.

`comfy-widgets sim --front-end-root DIR` (DIR is e.g. the `static` folder of the PyPI package
`comfyui-frontend-package`) serves the frontend's files at `/` and answers the calls the
frontend makes while it boots and runs that the simulated API does not have: the user manager
(`/users`, `/settings`, `/userdata`), `/i18n`, `/workflow_templates`, `/global_subgraphs`,
`/experiment/models`, `/node_replacements`. Settings and user files live in memory for the life
of the server (ComfyUI writes them under `user/default/`), bounded in count and size, so a page
can save workflows and change settings without touching the disk.

Single-user mode is emulated (ComfyUI without `--multi-user`): `/users` says the storage is on
the server and migrated, so the frontend never asks for a user name.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import mimetypes
import time
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from comfy_widgets.sim.server import SimServer

log = logging.getLogger(__name__)

MAX_USER_FILES = 1000  # files kept in the in-memory user folder
MAX_USER_FILE_BYTES = 16 << 20  # one user file (a workflow with embedded images can be large)
MAX_SETTINGS_BYTES = 1 << 20  # the whole settings document
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate"}


class FrontendError(ValueError):
    """The given front-end root cannot be served (names the problem)."""


def check_root(root: str | Path) -> Path:
    """The resolved front-end root; FrontendError unless it is a folder with an index.html."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise FrontendError(f"--front-end-root {root}: not a folder")
    if not (path / "index.html").is_file():
        raise FrontendError(
            f"--front-end-root {root}: no index.html in it (for the PyPI package "
            "comfyui-frontend-package, give its `static` folder)"
        )
    return path


def package_root() -> Path:
    """The `static` folder of the installed `comfyui-frontend-package` (FrontendError if none)."""
    spec = importlib.util.find_spec("comfyui_frontend_package")
    if spec is None or spec.origin is None:
        raise FrontendError(
            "comfyui-frontend-package is not installed: pip install comfyui-frontend-package"
        )
    return check_root(Path(spec.origin).parent / "static")


class UserStore:
    """The user's settings and files, in memory and bounded."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.files: dict[str, tuple[bytes, float]] = {}  # path -> (body, modified)

    def set_settings(self, values: dict[str, Any]) -> None:
        """Merge `values` into the settings (ValueError if the result is too large)."""
        merged = {**self.settings, **values}
        if len(json.dumps(merged)) > MAX_SETTINGS_BYTES:
            raise ValueError("settings too large")
        self.settings = merged

    def put(self, path: str, body: bytes, overwrite: bool) -> bool:
        """Store a file; False if it exists and overwrite is off (ValueError when over bounds)."""
        if path in self.files and not overwrite:
            return False
        if len(body) > MAX_USER_FILE_BYTES:
            raise ValueError("file too large")
        if path not in self.files and len(self.files) >= MAX_USER_FILES:
            raise ValueError("too many user files")
        self.files[path] = (body, time.time())
        return True

    def listing(self, folder: str, recurse: bool) -> list[str]:
        """Paths relative to `folder` of the files in it (and below it when `recurse`)."""
        prefix = folder.rstrip("/") + "/"
        names = [p[len(prefix) :] for p in self.files if p.startswith(prefix)]
        return sorted(n for n in names if recurse or "/" not in n)

    def info(self, folder: str, name: str) -> dict[str, Any]:
        """ComfyUI's `full_info` entry of one file."""
        body, modified = self.files[f"{folder.rstrip('/')}/{name}"]
        return {"path": name, "size": len(body), "modified": modified}


def _safe_user_path(raw: str) -> str | None:
    """A user-file path with no `..`, absolute part or empty segment (None if unsafe)."""
    path = urllib.parse.unquote(raw)
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("..", ".", "") for p in parts):
        return None
    return "/".join(parts)


class FrontendRoutes:
    """The handlers the frontend needs beyond the simulated ComfyUI API."""

    def __init__(self, server: SimServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.user = UserStore()

    # -- static files ---------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        """GET /: the frontend's index.html, never cached (as ComfyUI serves it)."""
        return web.FileResponse(self.root / "index.html", headers=NO_CACHE)

    async def static(self, request: web.Request) -> web.StreamResponse:
        """GET /{path}: a file of the front-end root (404 outside it or when absent)."""
        rel = request.match_info["path"]
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise web.HTTPNotFound()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in (".js", ".mjs"):
            content_type = "application/javascript"
        return web.FileResponse(path, headers={"Content-Type": content_type})

    # -- user manager ---------------------------------------------------------------------
    async def get_users(self, request: web.Request) -> web.Response:
        """GET /users: single-user mode, storage on the server."""
        return web.json_response({"storage": "server", "migrated": True})

    async def get_settings(self, request: web.Request) -> web.Response:
        """GET /settings: every stored setting."""
        return web.json_response(self.user.settings)

    async def post_settings(self, request: web.Request) -> web.Response:
        """POST /settings: merge a dict of settings."""
        values = await request.json()
        if not isinstance(values, dict):
            return web.Response(status=400, text="settings must be a JSON object")
        try:
            self.user.set_settings(values)
        except ValueError as ex:
            return web.Response(status=413, text=str(ex))
        return web.Response(status=200)

    async def get_setting(self, request: web.Request) -> web.Response:
        """GET /settings/{id}: one setting (null when unset)."""
        return web.json_response(self.user.settings.get(request.match_info["id"]))

    async def post_setting(self, request: web.Request) -> web.Response:
        """POST /settings/{id}: set one setting."""
        try:
            self.user.set_settings({request.match_info["id"]: await request.json()})
        except ValueError as ex:
            return web.Response(status=413, text=str(ex))
        return web.Response(status=200)

    async def list_userdata(self, request: web.Request) -> web.Response:
        """GET /userdata?dir=D[&recurse][&full_info]: the files of a user folder."""
        query = request.rel_url.query
        folder = _safe_user_path(query.get("dir", ""))
        if folder is None:
            return web.Response(status=400, text="invalid dir")
        recurse = query.get("recurse", "").lower() == "true"
        names = self.user.listing(folder, recurse)
        if query.get("full_info", "").lower() == "true":
            return web.json_response([self.user.info(folder, n) for n in names])
        return web.json_response(names)

    async def list_userdata_v2(self, request: web.Request) -> web.Response:
        """GET /v2/userdata?path=P: the entries of a user folder (files only here)."""
        folder = _safe_user_path(request.rel_url.query.get("path", "")) or ""
        names = self.user.listing(folder, recurse=False) if folder else []
        return web.json_response(
            [{"name": n, "path": f"{folder}/{n}", "type": "file"} for n in names]
        )

    async def get_userdata(self, request: web.Request) -> web.Response:
        """GET /userdata/{file}: one user file (404 when absent)."""
        path = _safe_user_path(request.match_info["file"])
        if path is None:
            return web.Response(status=400, text="invalid file")
        if path not in self.user.files:
            return web.Response(status=404)
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return web.Response(body=self.user.files[path][0], content_type=content_type)

    async def post_userdata(self, request: web.Request) -> web.Response:
        """POST /userdata/{file}[?overwrite=false][&full_info=true]: store a user file."""
        path = _safe_user_path(request.match_info["file"])
        if path is None:
            return web.Response(status=400, text="invalid file")
        body = await request.content.read(MAX_USER_FILE_BYTES + 1)
        overwrite = request.rel_url.query.get("overwrite", "true").lower() != "false"
        try:
            if not self.user.put(path, body, overwrite):
                return web.Response(status=409, text="file exists")
        except ValueError as ex:
            return web.Response(status=413, text=str(ex))
        folder, _, name = path.rpartition("/")
        if request.rel_url.query.get("full_info", "").lower() == "true":
            return web.json_response(self.user.info(folder, name))
        return web.json_response(path)

    async def delete_userdata(self, request: web.Request) -> web.Response:
        """DELETE /userdata/{file}."""
        path = _safe_user_path(request.match_info["file"])
        if path is None or self.user.files.pop(path, None) is None:
            return web.Response(status=404)
        return web.Response(status=204)

    async def move_userdata(self, request: web.Request) -> web.Response:
        """POST /userdata/{file}/move/{dest}: rename a user file."""
        src = _safe_user_path(request.match_info["file"])
        dest = _safe_user_path(request.match_info["dest"])
        if src is None or dest is None:
            return web.Response(status=400, text="invalid file")
        if src not in self.user.files:
            return web.Response(status=404)
        overwrite = request.rel_url.query.get("overwrite", "true").lower() != "false"
        if dest in self.user.files and not overwrite:
            return web.Response(status=409, text="file exists")
        self.user.files[dest] = self.user.files.pop(src)
        folder, _, name = dest.rpartition("/")
        return web.json_response(self.user.info(folder, name))

    # -- things a bare ComfyUI answers with nothing ---------------------------------------
    async def empty_object(self, request: web.Request) -> web.Response:
        """`{}`: no custom-node translations, templates, blueprints or node replacements."""
        return web.json_response({})

    async def empty_list(self, request: web.Request) -> web.Response:
        """`[]`: no experimental model listing."""
        return web.json_response([])


def install(app: web.Application, server: SimServer, root: Path) -> FrontendRoutes:
    """Add the frontend's routes to the simulator's app (a `SimServer.route_hooks` hook).

    The simulated API's routes were added first and keep precedence; `/` is index.html and
    every other path not taken falls through to the front-end root's files.
    """
    r = FrontendRoutes(server, check_root(root))
    api = [
        ("GET", "/users", r.get_users),
        ("GET", "/settings", r.get_settings),
        ("POST", "/settings", r.post_settings),
        ("GET", "/settings/{id}", r.get_setting),
        ("POST", "/settings/{id}", r.post_setting),
        ("GET", "/userdata", r.list_userdata),
        ("GET", "/v2/userdata", r.list_userdata_v2),
        ("POST", "/userdata/{file}/move/{dest}", r.move_userdata),
        ("GET", "/userdata/{file}", r.get_userdata),
        ("POST", "/userdata/{file}", r.post_userdata),
        ("DELETE", "/userdata/{file}", r.delete_userdata),
        ("GET", "/i18n", r.empty_object),
        ("GET", "/workflow_templates", r.empty_object),
        ("GET", "/global_subgraphs", r.empty_object),
        ("GET", "/node_replacements", r.empty_object),
        ("GET", "/experiment/models", r.empty_list),
    ]
    for method, path, handler in api:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    app.router.add_route("GET", "/", r.index)
    app.router.add_route("GET", "/{path:.+}", r.static)
    return r
