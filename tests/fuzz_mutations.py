"""Mutations of the shared workflows, for the fuzz test and ``benchmarks/fuzz_workflows.py``.

Each mutation takes a parsed workflow and a seeded ``random.Random`` and changes one to three
places of it the way broken files, hand edits and hostile input do: a value of another type, a
huge or non-finite number, a lone surrogate, deep nesting, a deleted or duplicated entry, a
link to a node that is not there. Text mutations cut or flip bytes of the JSON.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.shared_data import WORKFLOWS

#: Every shared workflow: the UI and API files, and frontend 1.58's templates and re-saves.
FOLDERS = ("ui", "api", "frontend-1.58/ui", "frontend-1.58/resaved")


def shared_workflow_files() -> list[Path]:
    return [path for folder in FOLDERS for path in sorted((WORKFLOWS / folder).glob("*.json"))]


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _values(rng: random.Random) -> list[Any]:
    return [
        None,
        0,
        -1,
        1,
        True,
        2**70,
        -(2**70),
        1e308,
        float("inf"),
        float("nan"),
        1.5,
        "",
        "CLIP",
        "\ud800",
        "x\udfffy",
        "<img src=x onerror=alert(1)>",
        "a" * 5000,
        [],
        {},
        [1, 2],
        [None, None, None, None, None, None],
        ["1", 0],
        {"id": 1},
        {"name": None, "link": "x"},
        _deep(rng.choice([50, 3000])),
        {"nodes": [], "links": []},
        rng.randint(-5, 200),
        str(rng.randint(-5, 200)),
    ]


def _containers(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every list and dict inside ``value`` with its path (depth-first, bounded)."""
    stack = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, (list, dict)) and len(here) < 40:
            yield here, item
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                stack.append(((*here, key), child))


def mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy of ``doc`` with one to three random changes."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        containers = list(_containers(doc))
        _path, target = rng.choice(containers)
        if not target:
            if isinstance(target, list):
                target.append(rng.choice(_values(rng)))
            else:
                target[rng.choice(["id", "type", "nodes", "links", "inputs"])] = rng.choice(
                    _values(rng)
                )
            continue
        key = rng.choice(list(target) if isinstance(target, dict) else range(len(target)))
        op = rng.random()
        if op < 0.55:
            target[key] = rng.choice(_values(rng))
        elif op < 0.7:
            del target[key]
        elif op < 0.8 and isinstance(target, list):
            target.insert(key, target[key])  # shared: deep values are not copied
        elif op < 0.9:
            value = target[key]
            if isinstance(value, list):
                target[key] = {str(i): v for i, v in enumerate(value)}
            elif isinstance(value, dict):
                target[key] = list(value.values())
            elif isinstance(value, int) and not isinstance(value, bool):
                target[key] = str(value)
            else:
                target[key] = [value]
        else:
            target[key] = _deep(rng.choice([10, 2000]))
    return doc


def mutate_text(text: str, rng: random.Random) -> str:
    """The JSON text cut short, or with a few characters replaced."""
    if rng.random() < 0.5:
        return text[: rng.randint(0, len(text))]
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        chars[rng.randrange(len(chars))] = rng.choice('{}[]",:0a\\\ud800')
    return "".join(chars)


def load_shared() -> list[tuple[str, dict[str, Any], str]]:
    """(name, parsed, text) for every shared workflow."""
    out = []
    for path in shared_workflow_files():
        text = path.read_text(encoding="utf-8")
        out.append((f"{path.parent.name}/{path.stem}", json.loads(text), text))
    return out
