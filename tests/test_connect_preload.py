"""What ``cw.connect()`` does ahead of a session's first batch, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COMFY_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_connect_reads_the_mime_tables_the_first_output_would():
    code = (
        "import mimetypes, comfy_widgets as cw\n"
        "before = mimetypes.inited\n"
        "cw.connect('http://127.0.0.1:9', store=None)\n"
        "print(before, mimetypes.inited)\n"
    )
    assert _run(code) == "False True"


def test_connect_keeps_the_mime_types_added_before_it():
    code = (
        "import mimetypes\n"
        "mimetypes.add_type('image/x-cw-test', '.cwtest')\n"
        "import comfy_widgets as cw\n"
        "cw.connect('http://127.0.0.1:9', store=None)\n"
        "print(mimetypes.guess_type('a.cwtest')[0])\n"
    )
    assert _run(code) == "image/x-cw-test"
