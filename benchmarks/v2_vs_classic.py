"""The same 20-item batch through Comfy API v2 (comfy-api-proxy) and the classic protocol, on the
same simulator, in one run; prints wall time and client CPU per item and the ratios v2 / classic.

    .venv/bin/python benchmarks/v2_vs_classic.py [--rounds 3] [--seconds-per-step 0]

The simulator and the proxy run in their own processes (started on free loopback ports), so
their CPU is not counted as ours: "client CPU" is this process's user + system time over the
batch (our event loop thread included). Rounds alternate the two protocols, each round with
fresh seeds (the simulator would skip a prompt it has cached); the median round is reported.
Both clients record into their own fresh temporary store, as a default session does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import comfy_widgets.engine.batch  # noqa: E402, F401  (imported up front, as in a session)
from comfy_widgets.engine.client import connect  # noqa: E402
from comfy_widgets.records.sqlite import Store  # noqa: E402
from comfy_widgets.workflow.workflow import Workflow  # noqa: E402
from tests.v2_servers import V2Stack  # noqa: E402  (the launcher the tests use)

WORKFLOW = ROOT / "comfy_widgets" / "examples" / "sd15_txt2img_api.json"
N = 20
TIMEOUT = 300.0


def run_batch(client, wf: Workflow, first_seed: int) -> tuple[float, float]:
    """Wall seconds and client CPU seconds of one N-item batch from submit to DataFrame."""
    seeds = ", ".join(str(first_seed + i) for i in range(N))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    df = client.batch(wf, seed=seeds, steps=20, width=512, height=512).result(timeout=TIMEOUT)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    bad = df[df["status"] != "completed"]
    if len(bad):
        raise RuntimeError(f"{len(bad)} item(s) did not complete: {bad['error'].tolist()}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds-per-step", type=float, default=0.0)
    args = parser.parse_args()
    wf = Workflow.load(WORKFLOW)
    with tempfile.TemporaryDirectory(prefix="cw-bench-v2-") as tmp:
        stack = V2Stack(Path(tmp), seconds_per_step=args.seconds_per_step).start()
        try:
            clients = {
                "classic": connect(stack.sim_url, store=Store(Path(tmp) / "classic.sqlite")),
                "v2": connect(stack.url, api_key=stack.token, store=Store(Path(tmp) / "v2.sqlite")),
            }
            seed = 10_000
            for client in clients.values():  # warm-up: connections, object_info, imports
                run_batch(client, wf, seed)
                seed += N
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
            for _ in range(args.rounds):
                for name, client in clients.items():
                    figures[name].append(run_batch(client, wf, seed))
                    seed += N
            for client in clients.values():
                client.close()
        finally:
            stack.stop()
    print(
        f"{N}-item batch, simulator at {args.seconds_per_step} s/step, "
        f"median of {args.rounds} round(s) per protocol"
    )
    medians = {}
    for name, rounds in figures.items():
        wall = statistics.median(w for w, _ in rounds)
        cpu = statistics.median(c for _, c in rounds)
        medians[name] = (wall, cpu)
        print(
            f"  {name:8s} wall {wall:6.2f} s ({1000 * wall / N:6.1f} ms/item)   "
            f"client CPU {cpu:6.2f} s ({1000 * cpu / N:6.1f} ms/item)"
        )
    (cw, cc), (vw, vc) = medians["classic"], medians["v2"]
    print(f"  ratio v2 / classic: wall {vw / cw:.2f}x, client CPU {vc / cc:.2f}x")


if __name__ == "__main__":
    main()
