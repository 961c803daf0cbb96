"""Which backend speaks to a server: the classic ComfyUI protocol or Comfy API v2.

The rule, first match wins (``choose_protocol``):

1. ``protocol="v2"`` / ``"classic"`` as given;
2. an ``api_key`` passed by the caller: v2 (Comfy Cloud, ``comfy-api-proxy``);
3. a URL whose path is ``…/api/v2``: v2 (what the store records for v2 servers, so ``resume``
   and ``cw.connect(row.server)`` find the protocol again);
4. ``$COMFY_API_KEY`` set and the server answers v2's unauthenticated ``GET /api/v2/health``:
   v2 with that key (one short probe that carries no credential);
5. otherwise classic.

The key from ``$COMFY_API_KEY`` is only ever sent to a server chosen as v2 (never to a classic
ComfyUI), and is kept in memory by the v2 client alone: not logged, not stored, not in a URL.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

import httpx

from comfy_widgets.transport.classic import DEFAULT_URL, ClassicBackend
from comfy_widgets.transport.v2 import API, Protocol, detect_protocol, v2_base_url
from comfy_widgets.transport.v2_backend import V2Backend

log = logging.getLogger(__name__)

API_KEY_ENV = "COMFY_API_KEY"
PROBE_TIMEOUT = 2.0


def server_url(url: str | None) -> str:
    """``url``, else ``$COMFYUI_URL``, else ComfyUI's default 127.0.0.1:8188."""
    return url or os.environ.get("COMFYUI_URL") or DEFAULT_URL


def env_api_key() -> str | None:
    """The API key in ``$COMFY_API_KEY`` (None if unset or blank)."""
    return (os.environ.get(API_KEY_ENV) or "").strip() or None


def probe_v2(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if ``url`` answers ``GET /api/v2/health`` with 200 (no credential is sent)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return False  # credentials in the URL are classic basic auth: no probe with them
    try:
        response = httpx.get(v2_base_url(url) + API + "/health", timeout=timeout)
    except (httpx.HTTPError, ValueError):
        return False
    return response.status_code == 200


def choose_protocol(
    url: str, *, api_key: str | None = None, protocol: str | Protocol | None = None
) -> Protocol:
    """The protocol to speak to ``url`` (see the module docstring for the rule)."""
    chosen = detect_protocol(url, api_key=api_key, protocol=protocol)
    if protocol is None and chosen is Protocol.CLASSIC and env_api_key() and probe_v2(url):
        log.info("%s answers Comfy API v2; using it with $%s", _safe(url), API_KEY_ENV)
        return Protocol.V2
    return chosen


def open_backend(
    url: str | None = None,
    *,
    token: str | None = None,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    api_key: str | None = None,
    protocol: str | Protocol | None = None,
) -> ClassicBackend | V2Backend:
    """The backend for ``url``: a ``V2Backend`` or a ``ClassicBackend`` (see ``choose_protocol``).

    A v2 server authenticates with ``api_key`` (``token`` is taken as one, ``$COMFY_API_KEY``
    when neither is given); ``auth`` and ``headers`` are classic-only.
    """
    target = server_url(url)
    chosen = choose_protocol(target, api_key=api_key, protocol=protocol)
    if chosen is Protocol.V2:
        if auth is not None or headers:
            raise ValueError(
                "a Comfy API v2 server authenticates with api_key=...; auth= and headers= "
                "are for the classic protocol"
            )
        return V2Backend(target, api_key=api_key or token or env_api_key())
    if api_key:
        raise ValueError(
            "api_key= is for Comfy API v2 servers, but protocol='classic' was asked; "
            "a classic ComfyUI behind a proxy takes token= (Bearer) or auth="
        )
    return ClassicBackend(target, token=token, auth=auth, headers=headers)


def _safe(url: str) -> str:
    """``url`` without user info, query or fragment (for log lines)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def describe(backend: Any) -> str:
    """``"v2"`` or ``"classic"``: the protocol a backend speaks."""
    return "v2" if isinstance(backend, V2Backend) else "classic"
