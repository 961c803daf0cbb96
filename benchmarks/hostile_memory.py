"""Peak memory of the client against a server that sends too much: bounded, never the body.

    .venv/bin/python benchmarks/hostile_memory.py

A hostile server (its own process, loopback) answers ``/view`` with a 500 MB body (chunked, no
Content-Length) and sends a 100 MB WebSocket frame on connect. A client process fetches the
output and keeps its WebSocket for a moment; its peak RSS is printed beside the RSS of the same
client process doing nothing hostile (the baseline). Goal: < 200 MB peak.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import time

VIEW_BYTES = 500 * 2**20
FRAME_BYTES = 100 * 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(port: int) -> None:
    """(Subprocess) the hostile server."""
    from aiohttp import web

    async def view(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        chunk, sent = b"\0" * 2**20, 0
        try:
            while sent < VIEW_BYTES:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        status = {"status": {"exec_info": {"queue_remaining": 0}}}
        await sock.send_str(
            json.dumps({"type": "status", "data": status, "pad": "x" * FRAME_BYTES})
        )
        async for _ in sock:
            pass
        return sock

    app = web.Application()
    app.router.add_get("/view", view)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.sleep(3600)


async def client(url: str, hostile: bool) -> dict:
    """(Subprocess) fetch the output and hold the socket; report what happened and peak RSS."""
    import comfy_widgets as cw
    from comfy_widgets.errors import ComfyWidgetsError

    c = cw.connect(url, store=None)
    outcome = "baseline"
    if hostile:
        start = time.perf_counter()
        try:
            await c.backend.view("big.png")
            outcome = "fetched (not refused!)"
        except ComfyWidgetsError as exc:
            outcome = f"refused after {time.perf_counter() - start:.1f} s: {exc}"
        await c.backend.wait_connected(3)
        await asyncio.sleep(2)
        outcome += (
            f"; WebSocket connects while the 100 MB frame was sent: {c.backend.monitor.connects}"
        )
    await c.aclose()
    return {
        "outcome": outcome,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(int(sys.argv[2])))
        return
    if sys.argv[1:2] == ["--client"]:
        print(json.dumps(asyncio.run(client(sys.argv[2], sys.argv[3] == "hostile"))))
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        for mode in ("baseline", "hostile"):
            out = subprocess.run(
                [sys.executable, __file__, "--client", url, mode],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode:>8}: peak RSS {figures['peak_rss_mb']:.0f} MB — {figures['outcome']}")
        print(
            f"goal: hostile peak < 200 MB with a {VIEW_BYTES >> 20} MB body "
            f"and a {FRAME_BYTES >> 20} MB frame"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
