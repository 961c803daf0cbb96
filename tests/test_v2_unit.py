"""The v2 client without a server: SSE parsing, protocol detection, error mapping, redirects
and the API key (httpx.MockTransport plays the server)."""

from __future__ import annotations

import logging

import httpx
import jsonschema
import pytest

from comfy_widgets.errors import (
    AuthenticationError,
    HTTPStatusError,
    PromptValidationError,
    ServerError,
    SubmitOutcomeUnknownError,
)
from comfy_widgets.transport.sse import SSEError, SSEEvent, SSEParser
from comfy_widgets.transport.v2 import (
    Protocol,
    V2Client,
    V2Status,
    detect_protocol,
    parse_event,
    v2_base_url,
)

KEY = "sk-very-secret-0123"


# --- SSE ---------------------------------------------------------------------------------------


def test_sse_events_split_anywhere_across_chunks():
    raw = b': keepalive\r\n\r\nevent: status\r\ndata: {"status":"running"}\r\n\r\nevent: progress\n'
    raw += b'data: {"value":0.5,\ndata: "nodes_done":1,"nodes_total":2}\n\ndata: x\r\r\n'
    for size in (1, 2, 3, 7, len(raw)):
        parser = SSEParser()
        events = []
        for i in range(0, len(raw), size):
            events += parser.feed(raw[i : i + size])
        assert events == [
            SSEEvent("status", '{"status":"running"}'),
            SSEEvent("progress", '{"value":0.5,\n"nodes_done":1,"nodes_total":2}'),
            SSEEvent("message", "x"),
        ]
        assert parser.comments == 1


def test_sse_refuses_an_event_larger_than_the_bound():
    parser = SSEParser(max_event_bytes=1000)
    parser.feed(b"event: preview\ndata: " + b"A" * 600 + b"\n")
    with pytest.raises(SSEError, match="longer than 1000 bytes"):
        parser.feed(b"data: " + b"A" * 600 + b"\n")
    with pytest.raises(SSEError, match="longer than"):
        SSEParser(max_event_bytes=100).feed(b"data: " + b"B" * 200)  # no newline ever


def test_sse_refuses_bytes_that_are_not_utf8():
    with pytest.raises(SSEError, match="not UTF-8"):
        SSEParser().feed(b"data: \xff\xfe\n\n")


def test_events_are_typed_and_bad_ones_named():
    status = parse_event("status", '{"status":"queued","queue_position":3}')
    assert status is not None and getattr(status, "queue_position", None) == 3
    assert parse_event("future_event", "{}") is None
    with pytest.raises(ServerError, match="'preview' event"):
        parse_event("preview", "not json")
    with pytest.raises(ServerError, match="unknown status"):
        parse_event("status", '{"status":"exploded"}')
    assert V2Status.CANCELED.terminal and not V2Status.CANCELING.terminal


# --- detection and URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kwargs", "expected"),
    [
        ("http://127.0.0.1:8188", {}, Protocol.CLASSIC),
        ("http://127.0.0.1:8189/api/v2", {}, Protocol.V2),
        ("https://cloud.example/api/v2/", {}, Protocol.V2),
        ("https://cloud.example", {"api_key": KEY}, Protocol.V2),
        ("http://127.0.0.1:8189", {"protocol": "v2"}, Protocol.V2),
        ("http://127.0.0.1:8188/api/v2", {"protocol": "classic"}, Protocol.CLASSIC),
    ],
)
def test_detect_protocol(url, kwargs, expected):
    assert detect_protocol(url, **kwargs) is expected


def test_detect_protocol_names_the_allowed_values():
    with pytest.raises(ValueError, match="'classic', 'v2'"):
        detect_protocol("http://x", protocol="v3")


def test_base_url_drops_the_api_prefix_and_refuses_credentials():
    assert v2_base_url("https://c.example/api/v2/") == "https://c.example"
    assert v2_base_url("http://127.0.0.1:8189/prefix/api/v2") == "http://127.0.0.1:8189/prefix"
    with pytest.raises(ValueError, match="api_key"):
        v2_base_url("https://user:pw@c.example")
    with pytest.raises(ValueError, match="http"):
        v2_base_url("ftp://c.example")


# --- the key, redirects and errors -------------------------------------------------------------


def envelope(code: str, message: str = "m", details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


async def test_the_key_never_follows_a_redirect_to_another_origin(caplog):
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.example":
            if request.url.path.endswith("/hop/content"):
                return httpx.Response(302, headers={"Location": "/api/v2/assets/a1/content"})
            return httpx.Response(302, headers={"Location": "https://cdn.example/blob?sig=1"})
        return httpx.Response(200, content=b"PIXELS")

    caplog.set_level(logging.DEBUG)
    client = V2Client("https://api.example", api_key=KEY, transport=httpx.MockTransport(server))
    try:
        assert await client.fetch("/assets/hop/content") == b"PIXELS"
    finally:
        await client.aclose()
    hosts = [(r.url.host, r.headers.get("Authorization")) for r in seen]
    assert hosts == [
        ("api.example", f"Bearer {KEY}"),  # first hop: own origin, key sent
        ("api.example", f"Bearer {KEY}"),  # same-origin redirect keeps it
        ("cdn.example", None),  # another origin never sees it
    ]
    assert KEY not in caplog.text and KEY not in repr(client)


async def test_an_absolute_url_to_another_origin_gets_no_key():
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"x")

    client = V2Client("https://api.example", api_key=KEY, transport=httpx.MockTransport(server))
    try:
        await client.fetch("https://api.example.evil.test/api/v2/assets/1/content")
        await client.fetch("http://api.example/api/v2/assets/1/content")  # other scheme
    finally:
        await client.aclose()
    assert [r.headers.get("Authorization") for r in seen] == [None, None]


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (401, envelope("unauthorized"), AuthenticationError, "check the api_key"),
        (403, envelope("forbidden"), AuthenticationError, "HTTP 403"),
        (
            422,
            envelope("invalid_workflow", "Node 3 bad", {"node_errors": {"3": {"errors": []}}}),
            PromptValidationError,
            "Node 3 bad",
        ),
        (422, envelope("workflow_format_ui"), PromptValidationError, "workflow_format_ui"),
        (503, envelope("upstream_unreachable"), HTTPStatusError, "upstream_unreachable"),
        (500, "<html>oops</html>", HTTPStatusError, "HTTP 500"),
    ],
)
async def test_errors_map_onto_our_exceptions(status, body, error, text):
    def server(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=body)

    client = V2Client(
        "http://127.0.0.1:1", api_key=KEY, transport=httpx.MockTransport(server), retry_budget=0
    )
    try:
        with pytest.raises(error, match=text) as info:
            await client.submit({"1": {"class_type": "X", "inputs": {}}}, idempotency_key="k")
    finally:
        await client.aclose()
    if isinstance(info.value, PromptValidationError) and "Node 3" in text:
        assert info.value.node_errors == {"3": {"errors": []}}
    assert KEY not in str(info.value)


async def test_a_reused_key_on_the_first_send_is_not_sent_again():
    calls = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(422, json=envelope("idempotency_key_reuse"))

    client = V2Client("http://127.0.0.1:1", transport=httpx.MockTransport(server))
    try:
        with pytest.raises(SubmitOutcomeUnknownError) as info:
            await client.submit({}, idempotency_key="item-1")
    finally:
        await client.aclose()
    assert info.value.key == "item-1" and len(calls) == 1


async def test_a_body_beyond_the_bound_is_refused():
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    client = V2Client("http://127.0.0.1:1", transport=httpx.MockTransport(server))
    try:
        with pytest.raises(ServerError, match="1000"):
            await client.fetch("/assets/1/content", limit=1000)
    finally:
        await client.aclose()


def test_the_contract_schema_refuses_what_it_should():
    from tests.test_v2_contract import check

    with pytest.raises(jsonschema.ValidationError):
        check("Job", {"id": "1", "status": "exploded"})
    with pytest.raises(jsonschema.ValidationError):
        check("ErrorEnvelope", {"code": "x"})


async def test_upstream_unreachable_is_retried_under_a_derived_key():
    keys: list[str] = []
    job = {"id": "j1", "status": "queued", "outputs": []}

    def server(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:  # the proxy could not reach ComfyUI and now holds this key
            return httpx.Response(503, json=envelope("upstream_unreachable"))
        if keys[-1] == keys[0]:
            return httpx.Response(422, json=envelope("idempotency_key_reuse"))
        return httpx.Response(201, json=job)

    client = V2Client("http://127.0.0.1:1", transport=httpx.MockTransport(server))
    try:
        submitted = await client.submit({}, idempotency_key="item-9", metadata="label-9")
    finally:
        await client.aclose()
    assert submitted.id == "j1"
    assert len(keys) == 2 and keys[0] == "item-9" and keys[1].startswith("item-9.")


async def test_an_expired_output_url_is_fetched_again_by_asset_id():
    from comfy_widgets.transport.v2_backend import V2Backend, V2FileRef

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.host == "signed.example":
            return httpx.Response(410, json=envelope("gone"))
        assert request.url.path == "/api/v2/assets/a1/content"
        return httpx.Response(200, content=b"PNG")

    client = V2Client("https://api.example", transport=httpx.MockTransport(server))
    backend = V2Backend("https://api.example", client=client)
    try:
        ref = V2FileRef("9", "out.png", "", "output", "a1", "https://signed.example/x?sig=old")
        assert await backend.fetch_output(ref) == b"PNG"
    finally:
        await backend.aclose()
