"""Contract: what our v2 client sends and what the real proxy answers, checked against the
proxy's own schema (``comfy_api_proxy.schemas``, generated from its vendored OpenAPI spec).

The generated pydantic models drop OpenAPI's ``nullable: true`` (the proxy says so in
``schemas/__init__.py``), so the fields the spec's descriptions call nullable accept null here;
everything else (required fields, types, the status enum) is checked as generated. Every
request the client makes and every answer and SSE event it reads during a real run, an upload,
a cancel and a refused submit is recorded by a tee in the client's transport and validated.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest
from comfy_api_proxy import schemas
from PIL import Image

from comfy_widgets.errors import PromptValidationError
from comfy_widgets.transport.sse import SSEParser
from comfy_widgets.transport.v2 import V2Client, V2Job, follow_job
from tests.test_v2_proxy import DEADLINE, workflow

pytestmark = pytest.mark.timeout(90)

# Fields the spec marks nullable (their descriptions say "null while …"), per model.
NULLABLE = {
    "Job": {"started_at", "completed_at", "queue_position", "progress", "error"},
    "Output": {"hash"},
    "Asset": {"hash", "url_expires_at"},
}


def schema_of(model: Any) -> dict[str, Any]:
    """The model's JSON Schema, with the spec's nullable fields accepting null."""
    schema = copy.deepcopy(model.model_json_schema())
    for name, node in [(model.__name__, schema), *schema.get("$defs", {}).items()]:
        for prop in NULLABLE.get(name, ()):
            if prop in node.get("properties", {}):
                node["properties"][prop] = {"anyOf": [node["properties"][prop], {"type": "null"}]}
    return schema


SCHEMAS = {
    m.__name__: schema_of(m)
    for m in (
        schemas.Job,
        schemas.Asset,
        schemas.ErrorEnvelope,
        schemas.StatusEvent,
        schemas.Progress,
        schemas.PreviewEvent,
        schemas.Output,
        schemas.AssetReference,
    )
}
EVENT_SCHEMA = {"status": "StatusEvent", "progress": "Progress", "preview": "PreviewEvent"}
EVENT_SCHEMA["output"] = "Output"


def check(model: str, body: Any) -> None:
    jsonschema.validate(body, SCHEMAS[model])


class _Tee(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, sink: bytearray):
        self.inner, self.sink = inner, sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.sink += chunk
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class Recorder(httpx.AsyncBaseTransport):
    """Passes every exchange through and keeps (request, status, headers, body bytes)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, int, httpx.Headers, bytearray]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.inner.handle_async_request(request)
        sink = bytearray()
        self.exchanges.append((request, response.status_code, response.headers, sink))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, sink),
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


JOB = re.compile(r"^/api/v2/jobs/[0-9a-f-]{36}(/cancel)?$")


def check_request(request: httpx.Request) -> None:
    """What the proxy's submit handler accepts, and no credential outside Authorization."""
    if request.method == "POST" and request.url.path == "/api/v2/jobs":
        key = request.headers["Idempotency-Key"]
        assert 1 <= len(key) <= 255 and key.isascii() and key.isprintable()
        body = json.loads(request.content)
        assert set(body) <= {"workflow", "metadata", "extra_data", "priority"}
        assert isinstance(body["workflow"], dict) and "nodes" not in body["workflow"]
        assert all("class_type" in node for node in body["workflow"].values())
        assert body.get("metadata") is None or len(body["metadata"].encode()) <= 1024
        assert set(body.get("extra_data") or {}) <= {"api_key_comfy_org"}
    assert request.headers["Authorization"].startswith("Bearer ")
    assert "test-key" not in str(request.url)


def check_response(request: httpx.Request, status: int, body: bytes) -> int:
    """Validate one answer by route; returns how many documents were checked."""
    path = request.url.path
    if request.method == "HEAD":
        return 0  # headers only: 200 known hash, 404 unknown
    if status >= 400:
        check("ErrorEnvelope", json.loads(body))
        return 1
    if path.endswith("/events"):
        parser = SSEParser()
        events = parser.feed(bytes(body))
        for event in events:
            check(EVENT_SCHEMA[event.event], json.loads(event.data))
        return len(events)
    if path.endswith("/content"):
        return 0
    doc = json.loads(body)
    if path == "/api/v2/jobs" and request.method == "GET":
        for job in doc["jobs"]:
            check("Job", job)
            V2Job.from_json(job)
        return len(doc["jobs"])
    if path == "/api/v2/jobs" or JOB.match(path):
        check("Job", doc)
        V2Job.from_json(doc)
        return 1
    if path.startswith("/api/v2/assets"):
        check("Asset", doc)
        return 1
    raise AssertionError(f"no schema for {request.method} {path}")


async def test_client_requests_and_proxy_answers_follow_the_schema(v2_stack):
    recorder = Recorder()
    client = V2Client(v2_stack.url, api_key=v2_stack.token, transport=recorder)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format="PNG")
    try:
        asset = await client.upload("in.png", buf.getvalue())
        check("AssetReference", asset.ref)
        job = await client.submit(
            workflow(808), idempotency_key="contract-808", metadata="cw:contract-808"
        )
        await asyncio.wait_for(follow_job(client, job.id), DEADLINE)
        await client.fetch(f"/assets/{asset.id}/content")
        await client.list_jobs()
        long = await client.submit(workflow(809, steps=400), idempotency_key="contract-809")
        await client.cancel(long.id)
        await asyncio.wait_for(follow_job(client, long.id), DEADLINE)
        with pytest.raises(PromptValidationError) as refused:
            await client.submit(
                {"1": {"class_type": "NoSuchNode", "inputs": {}}}, idempotency_key="contract-bad"
            )
    finally:
        await client.aclose()
    assert refused.value.error["type"] == "invalid_workflow"
    checked = 0
    for request, status, _headers, body in recorder.exchanges:
        check_request(request)
        checked += check_response(request, status, body)
    paths = {(r.method, JOB.sub("/api/v2/jobs/{id}", r.url.path)) for r, *_ in recorder.exchanges}
    assert {
        ("POST", "/api/v2/jobs"),
        ("GET", "/api/v2/jobs"),
        ("POST", "/api/v2/assets"),
        ("HEAD", "/api/v2/assets/by-hash/" + str(asset.hash)),
    } <= paths
    assert any(path.endswith("/events") for _, path in paths)
    assert checked >= 10
