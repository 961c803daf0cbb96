"""ComfyUI's PromptQueue: a heap ordered by `number`, the running items, and the history.

Every change calls `on_change` (the server broadcasts a `status` frame), as PromptQueue does
through `server.queue_updated()`.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

MAX_HISTORY = 10000
SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")  # not kept in the history


class PromptQueue:
    """Pending items `[number, prompt_id, prompt, extra_data, outputs]`, running ones, history."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.pending: list[tuple] = []
        self.running: dict[int, list] = {}
        self.history: dict[str, dict] = {}
        self._task_counter = 0
        self._wakeup = asyncio.Event()

    def put(self, item: list) -> None:
        """Queue an item; the heap orders by number, then prompt_id."""
        heapq.heappush(self.pending, tuple(item))
        self._wakeup.set()
        self.on_change()

    async def get(self) -> tuple[int, list]:
        """Wait for the next item, mark it running and return (task id, item)."""
        while not self.pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = list(heapq.heappop(self.pending))
        task_id = self._task_counter
        self._task_counter += 1
        self.running[task_id] = item  # nothing modifies a prompt once queued
        self.on_change()
        return task_id, item

    def task_done(self, task_id: int, outputs: dict, meta: dict, status: dict) -> None:
        """Move a finished item to the history (oldest first, capped) and announce it."""
        item = self.running.pop(task_id)
        for key in SENSITIVE_KEYS:
            item[3].pop(key, None)
        if len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        self.history[item[1]] = {"prompt": item, "outputs": outputs, "status": status, "meta": meta}
        self.on_change()

    def remaining(self) -> int:
        """Pending plus running items, as `queue_remaining` reports."""
        return len(self.pending) + len(self.running)

    def snapshot(self) -> dict:
        """The GET /queue body (stored items: serialize, never modify): running, then pending."""
        return {
            "queue_running": list(self.running.values()),
            "queue_pending": [list(i) for i in self.pending],
        }

    def running_ids(self) -> list[str]:
        """prompt_ids of the running items."""
        return [item[1] for item in self.running.values()]

    def delete(self, prompt_ids: list) -> None:
        """Remove pending items by prompt_id (unknown ids are ignored), then announce.

        Like ComfyUI, deleting the last pending item goes through clear() and so announces twice.
        """
        for prompt_id in prompt_ids:
            for i, item in enumerate(self.pending):
                if item[1] == prompt_id:
                    if len(self.pending) == 1:
                        self.clear()
                    else:
                        self.pending.pop(i)
                        heapq.heapify(self.pending)
                    self.on_change()
                    break

    def clear(self) -> None:
        """Drop every pending item."""
        self.pending = []
        self.on_change()

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict:
        """History entries, oldest first: one by id ({} if unknown), or `max_items` from
        `offset` (a negative offset with max_items means the last max_items).

        The entries are the stored ones, not copies: serialize them, never modify them."""
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {prompt_id: entry} if entry is not None else {}
        keys = list(self.history)
        if offset < 0 and max_items is not None:
            offset = len(keys) - max_items
        keys = keys[max(0, offset) :]
        if max_items is not None:
            keys = keys[: max(1, max_items)]
        return {k: self.history[k] for k in keys}

    def wipe_history(self) -> None:
        """POST /history {"clear": true}."""
        self.history.clear()

    def delete_history(self, prompt_id: str) -> None:
        """POST /history {"delete": [...]} for one id."""
        self.history.pop(prompt_id, None)
