"""`comfy-widgets run` against the simulator: sweeps, sets, counts, export folder, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from comfy_widgets import sim
from comfy_widgets.cli import main, parse_assignment, variations
from comfy_widgets.engine.plan import Values
from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.results.recorded import history


@pytest.fixture
def server():
    with sim.serve(seconds_per_step=0.005) as handle:
        yield handle


def test_parse_assignment_keeps_equals_signs_in_values():
    assert parse_assignment("prompt=a=b") == ("prompt", "a=b")
    with pytest.raises(ComfyWidgetsError, match="NAME=VALUE"):
        parse_assignment("steps")


def test_variations_pass_specs_through_and_split_text_lists():
    got = variations(["steps=12", "prompt=a fox"], ["cfg=5-9(+2)", "negative_prompt=x|y"])
    assert got["steps"] == "12" and got["prompt"] == "a fox" and got["cfg"] == "5-9(+2)"
    assert isinstance(got["negative_prompt"], Values)
    assert got["negative_prompt"].values() == ["x", "y"]


def test_run_sweep_writes_the_export_folder(server, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "sd15_txt2img",
            "--server",
            server.url,
            "--set",
            "steps=3",
            "--sweep",
            "cfg=5-9(+2)",
            "--sweep",
            "prompt=a red fox|a snowy owl",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6
    assert sorted(set(table["cfg"])) == [5, 7, 9]
    assert sorted(set(table["prompt"])) == ["a red fox", "a snowy owl"]
    assert set(table["status"]) == {"completed"}
    assert len(list((out / "images").iterdir())) == 6
    assert (out / "grid.png").is_file() and (out / "index.html").is_file()
    assert "6/6 completed, 0 failed" in captured.out
    assert "6/6" in captured.err  # the tqdm bar
    assert len(history(batch_id=table["batch_id"][0])) == 6  # recorded in the store


def test_run_count_with_the_builtin_simulator_and_an_api_workflow(tmp_path, capsys):
    out = tmp_path / "api"
    code = main(
        [
            "run",
            "empty_image_api",
            "--server",
            "sim",
            "--count",
            "3",
            "--set",
            "width=64",
            "--set",
            "height=32",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "results.csv")
    assert list(table["batch_index"]) == [0, 1, 2]
    assert len(list((out / "images").iterdir())) == 3


def test_unknown_parameter_exits_2_before_queueing(server, tmp_path, capsys):
    code = main(
        [
            "run",
            "sd15_txt2img",
            "--server",
            server.url,
            "--set",
            "stpes=3",
            "--out",
            str(tmp_path / "never"),
        ]
    )
    assert code == 2
    assert "stpes" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_failed_generations_exit_1_and_are_exported(server, tmp_path, capsys):
    server.faults.fail_node("SaveImage", times=1)
    out = tmp_path / "failed"
    code = main(
        [
            "run",
            "empty_image_api",
            "--server",
            server.url,
            "--count",
            "2",
            "--concurrency",
            "1",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "1/2 completed, 1 failed" in captured.out
    assert "error:" in captured.err
    assert sorted(pd.read_csv(out / "results.csv")["status"]) == ["completed", "failed"]


def test_missing_workflow_file_is_reported(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.json"), "--server", "sim"]) == 2
    assert "empty_image_api" in capsys.readouterr().err  # the bundled examples are listed


def test_sim_subcommand_serves_comfyui_until_stopped():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = str(Path(sys.executable).with_name("comfy-widgets"))
    proc = subprocess.Popen(
        [script, "sim", "--port", str(port), "--seconds-per-step", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=10) as resp:
            assert "comfyui_version" in json.load(resp)["system"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    assert proc.returncode == 0


CLI = "import sys; from comfy_widgets.cli import main; sys.exit(main())"


def test_ctrl_c_stops_the_rest_and_exports_what_finished(tmp_path):
    """SIGINT mid-batch: queued items are removed, finished ones exported, exit code 130."""
    out = tmp_path / "out"
    with sim.serve(seconds_per_step=0.1, previews=False) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLI,
                "run",
                "sd15_txt2img",
                "--server",
                server.url,
                "--set",
                "steps=4",
                "--set",
                "width=64",
                "--set",
                "height=64",
                "--count",
                "8",
                "--sweep",
                "seed=random",
                "--concurrency",
                "2",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while not _history_ids(server.url):  # wait until one generation finished
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        table = pd.read_csv(out / "results.csv")
        completed = table[table["status"] == "completed"]
        assert len(table) == 8 and 1 <= len(completed) < 8
        assert set(table["status"]) <= {"completed", "cancelled"}
        ran = _history_ids(server.url)  # the finished ones, and the one interrupted mid-run
        assert set(completed["prompt_id"]) <= ran
        cancelled = set(table.loc[table["status"] == "cancelled", "prompt_id"])
        assert ran - set(completed["prompt_id"]) <= cancelled
        assert "interrupted" in stderr


def _history_ids(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/history") as response:
        return set(json.load(response))
