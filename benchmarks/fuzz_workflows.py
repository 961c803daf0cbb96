"""Fuzz ``Workflow.load``/``to_api``/``parameters`` with mutations of every shared workflow.

Every failure must be a ``ComfyWidgetsError`` (``WorkflowError`` naming the node or link);
anything else is a bug. Prints how many mutations raised what, and the first example of each
bare exception. Goal: 0 non-library exceptions.

    .venv/bin/python benchmarks/fuzz_workflows.py [--count 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfy_widgets.errors import ComfyWidgetsError  # noqa: E402
from comfy_widgets.workflow.workflow import Workflow  # noqa: E402
from tests.fuzz_mutations import load_shared, mutate, mutate_text  # noqa: E402


def exercise(source: object) -> str:
    """Load, convert, list parameters and hash; the outcome's name ("ok" or the exception's)."""
    try:
        wf = Workflow.load(source)  # type: ignore[arg-type]
        wf.to_api()
        wf.parameters()
        _ = wf.content_hash
        repr(wf)
    except ComfyWidgetsError as exc:
        return f"library:{type(exc).__name__}"
    return "ok"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shared = load_shared()
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    start = time.perf_counter()
    for i in range(args.count):
        name, doc, text = shared[i % len(shared)]
        source: object = mutate_text(text, rng) if rng.random() < 0.1 else mutate(doc, rng)
        try:
            outcome = exercise(source)
        except Exception as exc:  # noqa: BLE001 - counting exactly these is the point
            outcome = f"BARE:{type(exc).__name__}"
            examples.setdefault(outcome, f"{name}: {traceback.format_exc(limit=-3)}")
        outcomes[outcome] += 1
    elapsed = time.perf_counter() - start
    bare = sum(n for key, n in outcomes.items() if key.startswith("BARE:"))
    print(f"{args.count} mutations of {len(shared)} shared workflows in {elapsed:.1f} s")
    for key, n in outcomes.most_common():
        print(f"  {n:6d}  {key}")
    print(f"non-library exceptions: {bare}")
    for key, text in examples.items():
        print(f"\n--- first {key} ---\n{text}")
    return 1 if bare else 0


if __name__ == "__main__":
    raise SystemExit(main())
