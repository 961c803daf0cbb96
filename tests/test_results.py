"""Tests for OutputRef (loading, thumbnails, display) and the results DataFrame and its HTML."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from PIL import Image

from comfy_widgets.engine.client import connect
from comfy_widgets.results.frame import (
    OutputRef,
    ResultsFrame,
    build_frame,
    columns_for,
    dataframe_html,
    empty_row,
    show,
)
from comfy_widgets.transport.outputs import Output


def png_bytes(color=(200, 30, 30), size=(300, 200), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def gif_bytes() -> bytes:
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


def image_output(data: bytes | None = None, name="ComfyUI_00001_.png") -> Output:
    return Output("9", name, "", "output", "image", "image/png", data or png_bytes())


class CountingRef(OutputRef):
    """An OutputRef that counts full loads."""

    loads = 0

    def load(self) -> bytes:
        type(self).loads += 1
        return super().load()


# --- OutputRef -----------------------------------------------------------------------------------


def test_from_output_keeps_the_bytes_and_describes_the_file():
    data = png_bytes()
    ref = OutputRef.from_output(image_output(data))
    assert (ref.filename, ref.type, ref.kind, ref.mime, ref.node_id) == (
        "ComfyUI_00001_.png",
        "output",
        "image",
        "image/png",
        "9",
    )
    assert ref.load() is data
    assert ref.image().size == (300, 200)


def test_local_copy_is_preferred_and_memory_is_not_kept(tmp_path):
    output = image_output()
    path = tmp_path / "copy.png"
    copy = png_bytes((0, 0, 255))
    path.write_bytes(copy)
    output.local_path = str(path)
    ref = OutputRef.from_output(output)
    assert ref.local_path == str(path)
    assert ref.load() == copy
    assert ref.image().getpixel((0, 0)) == (0, 0, 255)


def test_thumbnail_fits_the_size_and_is_cached():
    CountingRef.loads = 0
    ref = CountingRef(filename="a.png", _data=png_bytes(size=(512, 256)))
    first = ref.thumbnail(128)
    second = ref.thumbnail(128)
    assert first.size == (128, 64) and second.size == (128, 64)
    assert CountingRef.loads == 1
    ref.thumbnail(64)
    assert CountingRef.loads == 2


def test_transparent_images_keep_alpha_in_thumbnails():
    ref = OutputRef(filename="a.png", _data=png_bytes((1, 2, 3, 0), mode="RGBA"))
    mime, _ = ref.thumbnail_bytes(64)
    assert mime == "image/png"
    assert ref.thumbnail(64).mode == "RGBA"
    assert OutputRef(filename="b.png", _data=png_bytes()).thumbnail_bytes(64)[0] == "image/jpeg"


def test_animated_gif_is_detected_and_thumbnailed():
    ref = OutputRef(filename="anim.gif", mime="image/gif", _data=gif_bytes())
    assert ref.is_animated()
    assert ref.thumbnail(32).size == (32, 32)
    assert not OutputRef(filename="still.png", _data=png_bytes()).is_animated()


def test_text_output_reads_its_text():
    output = Output("12", "", "", "", "text", "text/plain", b"a <b>cat</b>")
    ref = OutputRef.from_output(output)
    assert ref.text() == "a <b>cat</b>"
    with pytest.raises(TypeError):
        ref.image()


def test_repr_png_is_a_png_thumbnail_and_none_for_video():
    png = OutputRef(filename="a.png", _data=png_bytes(size=(600, 300)))._repr_png_()
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(png)).size == (256, 128)
    video = OutputRef(filename="v.mp4", kind="video", mime="video/mp4", _data=b"\0")
    assert video._repr_png_() is None
    assert "v.mp4" in video._repr_html_()


@pytest.fixture
def view_server():
    """A loopback HTTP server answering GET /view with a PNG named by the query."""
    served = {"a.png": png_bytes((10, 20, 30))}
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            seen.append((urlsplit(self.path).path, query, self.headers.get("Authorization")))
            body = served.get(query.get("filename", [""])[0])
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_load_fetches_from_the_server_view_when_nothing_is_local(view_server):
    url, seen = view_server
    ref = OutputRef.from_record(
        {"filename": "a.png", "subfolder": "sub", "type": "temp", "kind": "image"}, server=url
    )
    assert ref.image().getpixel((0, 0)) == (10, 20, 30)
    path, query, auth = seen[0]
    assert path == "/view" and auth is None
    assert query == {"filename": ["a.png"], "subfolder": ["sub"], "type": ["temp"]}


def test_fetch_through_a_client_sends_its_credentials_from_any_thread(view_server):
    url, seen = view_server
    client = connect(url, token="secret-token")
    try:
        ref = OutputRef(filename="a.png", server=url, _client=client)
        assert ref.image().getpixel((0, 0)) == (10, 20, 30)  # via the client's own loop
    finally:
        client.close()
    assert seen[-1][2] == "Bearer secret-token"


async def test_fetch_on_the_client_loop_thread_uses_a_plain_request(view_server):
    url, seen = view_server
    client = connect(url, token="secret-token")
    ref = OutputRef(filename="a.png", server=url, _client=client)
    assert client.on_loop_thread()
    assert ref.load()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen[-1][2] == "Bearer secret-token"
    await client.aclose()


def test_missing_local_file_falls_back_to_the_server(view_server, tmp_path):
    url, _ = view_server
    record = {"filename": "a.png", "kind": "image", "local_path": str(tmp_path / "gone.png")}
    assert OutputRef.from_record(record, server=url).image().size == (300, 200)


def test_no_copy_and_no_server_says_so():
    with pytest.raises(FileNotFoundError, match="a.png"):
        OutputRef(filename="a.png").load()


# --- the frame -----------------------------------------------------------------------------------


def frame(rows=None) -> ResultsFrame:
    ref = OutputRef(filename="a.png", _data=png_bytes())
    text = OutputRef(filename="", kind="text", mime="text/plain", _data=b"<script>x</script>")
    rows = rows or [
        {
            "batch_id": "b1",
            "batch_index": 0,
            "prompt": "a <cat> & dog",
            "seed": 5,
            **empty_row("completed"),
            "image": ref,
            "outputs": [ref, text],
        },
        {"batch_id": "b1", "batch_index": 1, "prompt": "owl", "seed": 6, **empty_row("pending")},
    ]
    return build_frame(rows, columns_for(["prompt", "seed"]))


def test_columns_follow_the_contract():
    assert columns_for(["seed", "prompt", "cfg"]) == [
        "batch_id",
        "batch_index",
        "prompt_id",
        "server",
        "status",
        "prompt",
        "cfg",
        "seed",
        "image",
        "outputs",
        "queued_at",
        "started_at",
        "finished_at",
        "duration_s",
        "error",
    ]


def test_build_frame_types_timestamps_and_keeps_subclass_through_filtering():
    df = frame()
    assert isinstance(df, pd.DataFrame) and isinstance(df, ResultsFrame)
    assert str(df["queued_at"].dtype).startswith("datetime64") and df["duration_s"].dtype == float
    completed = df[df["status"] == "completed"]
    assert isinstance(completed, ResultsFrame) and len(completed) == 1


def test_html_has_thumbnails_and_escapes_text():
    html = frame()._repr_html_()
    assert html.count("data:image/jpeg;base64,") == 2  # image column + first of outputs
    assert html.count('title="a.png"') == 2  # long data URIs are not cut by max_colwidth
    assert "a &lt;cat&gt; &amp; dog" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_show_renders_a_plain_dataframe_the_same_way():
    plain = pd.DataFrame(frame())
    assert type(plain) is pd.DataFrame
    assert "data:image/jpeg;base64," in show(plain)._repr_html_()


def test_long_frames_render_only_the_shown_rows():
    CountingRef.loads = 0
    rows = [
        {"batch_index": i, "image": CountingRef(filename=f"{i}.png", _data=png_bytes(size=(8, 8)))}
        for i in range(300)
    ]
    html = dataframe_html(pd.DataFrame(rows))
    shown = pd.get_option("display.min_rows")
    assert html.count("<img") == shown
    assert CountingRef.loads == shown
    assert "300 rows" in html
