"""Server URLs: schemes, userinfo never kept in the URL, auth headers."""

from __future__ import annotations

import base64

import pytest

from comfy_widgets.engine.client import Client
from comfy_widgets.transport.classic import _auth_headers, _split_url


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://127.0.0.1:8188", "http://127.0.0.1:8188"),
        ("127.0.0.1:8188/", "http://127.0.0.1:8188"),
        ("ws://host:8188/ws", "http://host:8188"),
        ("wss://host/comfy/", "https://host/comfy"),
        ("https://host/comfy/api", "https://host/comfy"),
        ("http://[::1]:8188", "http://[::1]:8188"),
    ],
)
def test_urls_are_normalised(given, url):
    assert _split_url(given) == (url, None)


def test_userinfo_is_taken_out_of_the_url():
    url, userinfo = _split_url("https://bob:pa%3Ass@host:443/x")
    assert url == "https://host:443/x" and userinfo == ("bob", "pa:ss")


def test_unsupported_scheme():
    with pytest.raises(ValueError, match="ftp"):
        _split_url("ftp://host")


def test_auth_headers():
    assert _auth_headers("t", None, None) == {"Authorization": "Bearer t"}
    basic = _auth_headers(None, ("u", "p"), {"X": "1"})
    assert basic["X"] == "1"
    assert base64.b64decode(basic["Authorization"].split()[1]) == b"u:p"
    assert _auth_headers(None, None, None) == {}


def test_default_url_from_environment(monkeypatch):
    monkeypatch.setenv("COMFYUI_URL", "http://envhost:9999")
    client = Client()
    assert client.url == "http://envhost:9999"
    assert "envhost" in repr(client) and client.client_id in repr(client)


def test_request_headers_are_a_copy():
    client = Client("http://h", token="t")
    headers = client.request_headers()
    headers["Authorization"] = "changed"
    assert client.request_headers() == {"Authorization": "Bearer t"}
