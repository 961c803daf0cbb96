"""The ``comfy-widgets`` command: ``lab`` (JupyterLab on the quickstart), ``run`` (a headless,
recorded batch written to a folder) and ``sim`` (the simulated ComfyUI server)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.extras import require

if TYPE_CHECKING:
    import pandas as pd

    from comfy_widgets.engine.batch import Batch
    from comfy_widgets.workflow.workflow import Workflow

STOP_TIMEOUT_S = 60  # how long Ctrl+C waits for the server to drop the rest
INTERRUPTED_EXIT = 130  # the shell's code for a command ended by SIGINT


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its three subcommands."""
    parser = argparse.ArgumentParser(
        prog="comfy-widgets", description="Drive a ComfyUI server from JupyterLab or the shell."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser(
        "lab", help="open JupyterLab on the quickstart notebook (simulator unless COMFYUI_URL)"
    )
    lab.add_argument("directory", nargs="?", type=Path, help="folder to open (default: notebooks/)")
    lab.add_argument("--port", type=int, default=8888, help="JupyterLab's port (default 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a web browser")

    run = commands.add_parser(
        "run", help="run a workflow (with sweeps) headless and export the results to a folder"
    )
    run.add_argument("workflow", help="workflow JSON file (UI or API format) or a bundled example")
    run.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set one parameter, e.g. --set steps=20 --set prompt='a red fox'",
    )
    run.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="vary a parameter: cfg=5-9(+2), steps=10-30[3], sampler_name=euler,ddim,"
        " seed=random, or prompt='a cat|a dog' (| separates texts)",
    )
    run.add_argument(
        "--count", type=int, default=None, help="repeats of every cell of the sweep (default 1)"
    )
    run.add_argument(
        "--mode",
        choices=("grid", "zip"),
        default="grid",
        help="combine sweeps as a grid (cartesian product) or pairwise",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="folder to export to (default comfy_runs/<batch id>)"
    )
    run.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help="ComfyUI URL (default $COMFYUI_URL); repeat to spread over servers;"
        " 'sim' starts the simulated server",
    )
    run.add_argument("--concurrency", type=int, default=None, help="prompts in flight at once")

    commands.add_parser(  # its options belong to python -m comfy_widgets.sim, which parses them
        "sim", add_help=False, help="start the simulated ComfyUI server (see: sim --help)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command != "sim" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "sim":
            from comfy_widgets.sim.__main__ import main as sim_main

            sim_main(extra)
            return 0
        if args.command == "lab":
            require("lab", "comfy-widgets lab")
            from comfy_widgets.lab import launch

            return launch(port=args.port, open_browser=not args.no_browser, root_dir=args.directory)
        require("cli", "comfy-widgets run")
        return run_command(args)
    except (ComfyWidgetsError, FileNotFoundError) as exc:
        print(f"comfy-widgets: {exc}", file=sys.stderr)
        return 2


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (the value may itself contain '=')."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ComfyWidgetsError(f"expected NAME=VALUE, not {text!r}")
    return name.strip(), value


def variations(fixed: Sequence[str], sweeps: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of ``client.batch`` from --set and --sweep.

    Values stay strings: the variation plan reads numbers, ranges and comma lists for the
    parameter's own type. A sweep containing '|' is a list of texts (for prompts).
    """
    from comfy_widgets.engine.plan import values

    result: dict[str, Any] = dict(parse_assignment(item) for item in fixed)
    for item in sweeps:
        name, spec = parse_assignment(item)
        result[name] = values(spec.split("|")) if "|" in spec else spec
    return result


def load_workflow(source: str) -> Workflow:
    """A Workflow from a file path, or from a bundled example's name."""
    from comfy_widgets import examples
    from comfy_widgets.workflow.workflow import Workflow

    path = Path(source)
    return Workflow.load(path if path.exists() else examples.path(source))


def run_command(args: argparse.Namespace) -> int:
    """Run the batch the arguments describe with a tqdm bar, export it, and report the outcome."""
    from comfy_widgets.engine.client import connect

    workflow = load_workflow(args.workflow)
    with ExitStack() as stack:
        servers = []
        for url in args.server:
            if url == "sim":
                from comfy_widgets import sim

                url = stack.enter_context(sim.serve(port=0)).url
            servers.append(url)
        client = stack.enter_context(connect(servers[0] if servers else None))
        options: dict[str, Any] = {"mode": args.mode}
        if len(servers) > 1:
            options["servers"] = servers
        if args.concurrency:
            options["concurrency"] = args.concurrency
        if args.count is not None:
            options["count"] = args.count
        batch = client.batch(workflow, **options, **variations(args.fixed, args.sweep))
        frame = _follow(batch)
        out = args.out or Path("comfy_runs") / batch.id
        batch.export(out)
    print(
        f"{batch.completed_count}/{batch.total} completed, {batch.failed_count} failed;"
        f" exported to {out}"
    )
    for error in frame["error"].dropna().unique():
        print(f"  error: {error}", file=sys.stderr)
    if batch.status == "cancelled":
        return INTERRUPTED_EXIT
    return 0 if batch.failed_count == 0 and batch.completed_count == batch.total else 1


def _follow(batch: Batch) -> pd.DataFrame:
    """Wait for the batch, showing a tqdm bar of finished generations; return its DataFrame."""
    from tqdm import tqdm

    with tqdm(total=batch.total, unit="img", desc=f"batch {batch.id[:8]}") as bar:

        def update(_batch: Batch) -> None:
            finished = batch.completed_count + batch.failed_count
            if finished != bar.n:
                bar.set_postfix(failed=batch.failed_count, refresh=False)
                bar.update(finished - bar.n)

        unsubscribe = batch.subscribe(update)
        try:
            frame = batch.result()
        except KeyboardInterrupt:
            # Ctrl+C: stop what is left, keep what finished, and export that
            print(
                "\ninterrupted: removing queued items and interrupting the running one",
                file=sys.stderr,
            )
            batch.stop(interrupt=True).result(timeout=STOP_TIMEOUT_S)
            frame = batch.result(timeout=STOP_TIMEOUT_S)
        finally:
            unsubscribe()
        update(batch)
    return frame
