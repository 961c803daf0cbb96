"""ComfyUI 0.27+'s per-job cancel on the simulated server: ``POST /api/jobs/{id}/cancel``.

``comfy-api-proxy`` cancels a v2 job through this endpoint and nothing else (it ignores the
answer and re-reads ``/history`` and ``/queue``), so without it a cancelled v2 job kept running
on the simulator. The route interrupts the prompt if it runs and removes it if it waits, as
ComfyUI's atomic cancel does. Its answer body is not in the recordings; it answers
``{"prompt_id", "cancelled"}``.

``add_cancel_routes`` adds only the routes the application does not already have, so it stays
correct when the simulator's own route table grows the ``/api/jobs`` family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from comfy_widgets.sim.server import SimServer


def _cancel_one(server: SimServer, prompt_id: str) -> bool:
    """Interrupt ``prompt_id`` if it runs, remove it if it waits; False if it is neither."""
    if prompt_id in server.queue.running_ids():
        server.interrupt(prompt_id)
        return True
    if any(item[1] == prompt_id for item in server.queue.pending):
        server.queue.delete([prompt_id])
        return True
    return False


def add_cancel_routes(app: web.Application, server: SimServer) -> None:
    """Register ``POST /api/jobs/{prompt_id}/cancel`` unless the app already has it."""

    async def cancel(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        return web.json_response(
            {"prompt_id": prompt_id, "cancelled": _cancel_one(server, prompt_id)}
        )

    taken = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    for path in ("/api/jobs/{prompt_id}/cancel", "/jobs/{prompt_id}/cancel"):
        if ("POST", path) not in taken:
            app.router.add_route("POST", path, cancel)
