"""The prompt graph: ComfyUI's execution order and its classic output cache keys.

Order follows comfy_execution/graph.py (ExecutionList): a depth-first walk from each output node
builds the pending list, and each step picks an available node with the "UX friendly" rule
(output nodes first, then nodes one or two links before an output, then the first pending one).
"""

from __future__ import annotations

import json
from collections.abc import Callable


def is_link(value: object) -> bool:
    """True for an API-format link `[node_id, slot]`."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def execution_order(
    prompt: dict, outputs: list[str], cached: set[str], is_output: Callable[[str], bool]
) -> list[str]:
    """Node ids in the order ComfyUI runs them; cached non-output nodes are left out."""
    pending: dict[str, bool] = {}
    blocking: dict[str, dict[str, bool]] = {}
    block_count: dict[str, int] = {}

    def add_node(start: str) -> None:
        stack = [start]
        links = []
        while stack:
            node_id = stack.pop()
            if node_id in pending:
                continue
            pending[node_id] = True
            block_count[node_id] = 0
            blocking[node_id] = {}
            for value in prompt[node_id].get("inputs", {}).values():
                if is_link(value):
                    if value[0] not in cached:
                        stack.append(value[0])
                    links.append((value[0], node_id))
        for from_id, to_id in links:
            if from_id in cached:
                continue
            add_node(from_id)
            if to_id not in blocking[from_id]:
                blocking[from_id][to_id] = True
                block_count[to_id] += 1

    def leads_to_output(node_id: str, depth: int) -> bool:
        return any(
            is_output(b) if depth == 1 else leads_to_output(b, depth - 1) for b in blocking[node_id]
        )

    def pick(available: list[str]) -> str:
        for rule in (is_output, lambda n: leads_to_output(n, 1), lambda n: leads_to_output(n, 2)):
            for node_id in available:
                if rule(node_id):
                    return node_id
        return available[0]

    for output in outputs:
        add_node(output)
    order = []
    while pending:
        node_id = pick([n for n in pending if block_count[n] == 0])
        order.append(node_id)
        del pending[node_id]
        for blocked in blocking.pop(node_id):
            block_count[blocked] -= 1
    return order


def signatures(prompt: dict, salt: Callable[[str, dict], object]) -> dict[str, str]:
    """Each node's cache key: its class, widget values and its ancestors' keys (not its id).

    `salt(node_id, node)` adds what ComfyUI's IS_CHANGED would (e.g. an input file's hash).
    """
    memo: dict[str, str] = {}

    def sig(node_id: str) -> str:
        if node_id not in memo:
            node = prompt[node_id]
            inputs = {}
            for name, value in sorted(node.get("inputs", {}).items()):
                inputs[name] = ["LINK", sig(value[0]), value[1]] if is_link(value) else value
            memo[node_id] = json.dumps(
                [node["class_type"], salt(node_id, node), inputs], sort_keys=True, default=str
            )
        return memo[node_id]

    return {node_id: sig(node_id) for node_id in prompt}
