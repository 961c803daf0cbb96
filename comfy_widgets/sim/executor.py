"""Runs one prompt and emits ComfyUI's WebSocket frames in ComfyUI's order (execution.py).

Per node: progress_state (running) -> executing -> [sampler steps: progress_state -> preview
type 4 -> progress -> preview type 1] -> [executed] -> progress_state (finished). The classic
cache keeps the outputs of the most recent prompt's nodes only.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from comfy_widgets.sim import graph, images, nodes
from comfy_widgets.sim.progress import ProgressRegistry

if TYPE_CHECKING:
    from comfy_widgets.sim.server import SimServer

LOADERS_OF_INPUT_IMAGES = ("LoadImage", "LoadImageMask")


class Interrupted(Exception):
    """The prompt was interrupted (ComfyUI's InterruptProcessingException)."""


@dataclass
class CacheEntry:
    """A node's cached outputs and its ui dict (None if it has none)."""

    outputs: tuple
    ui: dict | None


@dataclass
class RunState:
    """What one prompt's run accumulates."""

    prompt_id: str
    prompt: dict
    client_id: str | None
    extra_data: dict
    signatures: dict
    values: dict = field(default_factory=dict)
    executed: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    progress: ProgressRegistry | None = None


def _ms() -> int:
    return int(time.time() * 1000)


def _format_input(value: object) -> object:
    """An input value as execution_error's current_inputs shows it."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class Executor:
    """The prompt executor of one server: its cache, and how it talks through the server."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.cache: dict[str, CacheEntry] = {}

    # -- messages -------------------------------------------------------------------------
    def _add_message(self, run: RunState, event: str, data: dict, broadcast: bool) -> None:
        data = {**data, "timestamp": _ms()}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self.server.send_sync(event, data, run.client_id)

    def _to_client(self, run: RunState, event: str, data: dict) -> None:
        """A frame only the prompt's own client gets (nothing if the prompt has none)."""
        if run.client_id is not None:
            self.server.send_sync(event, data, run.client_id)

    # -- one prompt -----------------------------------------------------------------------
    async def execute(
        self, prompt: dict, prompt_id: str, extra_data: dict, outputs: list[str]
    ) -> tuple[bool, list, dict]:
        """Run a prompt; returns (success, status messages, history outputs/meta)."""
        server = self.server
        server.interrupt_flag.clear()
        client_id = extra_data.get("client_id")
        server.client_id = client_id
        run = RunState(
            prompt_id, prompt, client_id, extra_data, graph.signatures(prompt, self._salt)
        )
        run.progress = ProgressRegistry(prompt_id, lambda text: server.send_raw(text, client_id))
        self._add_message(run, "execution_start", {"prompt_id": prompt_id}, broadcast=False)
        server.faults.inject_malformed(client_id)
        cached = [n for n in prompt if run.signatures[n] in self.cache]
        for node_id in cached:
            run.values[node_id] = self.cache[run.signatures[node_id]].outputs
        self._add_message(
            run, "execution_cached", {"nodes": cached, "prompt_id": prompt_id}, broadcast=False
        )
        order = graph.execution_order(
            prompt,
            outputs,
            set(cached),
            lambda n: bool(server.node_info(prompt[n]["class_type"]).get("output_node")),
        )
        success = await self._run_nodes(run, order)
        if success:
            self._add_message(run, "execution_success", {"prompt_id": prompt_id}, broadcast=False)
        server.last_node_id = None
        keep = set(run.signatures.values())
        self.cache = {sig: entry for sig, entry in self.cache.items() if sig in keep}
        return success, run.messages, self._history_result(run)

    def _history_result(self, run: RunState) -> dict:
        """History outputs and meta: the cached ui of every node of the prompt.

        As in ComfyUI 0.3.64 this includes output nodes that were cached, and nodes that ran
        before an error.
        """
        outputs, meta = {}, {}
        for node_id, sig in run.signatures.items():
            entry = self.cache.get(sig)
            if entry is not None and entry.ui is not None:
                outputs[node_id] = entry.ui
                meta[node_id] = {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
        return {"outputs": outputs, "meta": meta}

    async def _run_nodes(self, run: RunState, order: list[str]) -> bool:
        """Execute nodes in order; reports the first failure or interrupt and stops."""
        for node_id in order:
            try:
                await self._run_node(run, node_id)
            except Interrupted:
                self._add_message(
                    run,
                    "execution_interrupted",
                    {
                        "prompt_id": run.prompt_id,
                        "node_id": node_id,
                        "node_type": run.prompt[node_id]["class_type"],
                        "executed": list(run.executed),
                    },
                    broadcast=True,
                )
                return False
            except Exception as ex:  # noqa: BLE001 - any node failure becomes execution_error
                self._report_error(run, node_id, ex)
                return False
        return True

    def _report_error(self, run: RunState, node_id: str, ex: Exception) -> None:
        inputs = self._resolve(run, node_id, missing_ok=True)
        hidden = self._hidden_inputs(run, node_id)
        current = {k: [_format_input(v)] for k, v in {**inputs, **hidden}.items()}
        self._add_message(
            run,
            "execution_error",
            {
                "prompt_id": run.prompt_id,
                "node_id": node_id,
                "node_type": run.prompt[node_id]["class_type"],
                "executed": list(run.executed),
                "exception_message": f"{ex}\n",
                "exception_type": type(ex).__name__,
                "traceback": traceback.format_tb(ex.__traceback__),
                "current_inputs": current,
                "current_outputs": list(run.prompt),
            },
            broadcast=False,
        )

    def _replay_cached(self, run: RunState, node_id: str, entry: CacheEntry) -> None:
        """A node whose output is cached: its cached ui again, no executing, no progress."""
        self._to_client(
            run,
            "executed",
            {
                "node": node_id,
                "display_node": node_id,
                "output": entry.ui,
                "prompt_id": run.prompt_id,
            },
        )
        run.values[node_id] = entry.outputs
        run.progress.finish(node_id)

    async def _run_node(self, run: RunState, node_id: str) -> None:
        """Execute one node with its frames; output nodes write their files."""
        server = self.server
        class_type = run.prompt[node_id]["class_type"]
        info = server.node_info(class_type)
        entry = self.cache.get(run.signatures[node_id])
        if entry is not None:
            self._replay_cached(run, node_id, entry)
            return
        run.progress.start(node_id)
        if run.client_id is not None:
            server.last_node_id = node_id
        self._to_client(
            run, "executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
        )
        self._check_interrupt()  # ComfyUI checks before a node runs, not during its work
        await server.node_delay(node_id)
        server.faults.check_node(node_id, class_type)
        inputs = self._resolve(run, node_id)
        if class_type in LOADERS_OF_INPUT_IMAGES:  # the picture keeps the loaded image's size
            inputs.update(server.input_image_size(str(inputs.get("image", ""))))
        outputs = nodes.evaluate(class_type, inputs, info)
        params = nodes.merge_inputs(inputs)
        if class_type == "GetImageSize":
            server.send_progress_text(nodes.image_size_text(params), node_id)
        steps = nodes.sampler_steps(class_type, params)
        if steps:
            await self._sample(run, node_id, {**params, "sampled": True}, steps)
        ui = (
            await self._write_outputs(run, node_id, params, inputs)
            if info.get("output_node")
            else None
        )
        run.progress.finish(node_id)
        run.values[node_id] = outputs
        self.cache[run.signatures[node_id]] = CacheEntry(outputs, ui)
        run.executed.append(node_id)

    async def _write_outputs(
        self, run: RunState, node_id: str, params: dict, inputs: dict
    ) -> dict | None:
        """Let an output node write its files (off the loop) and report them as `executed`."""
        ui = await asyncio.to_thread(
            self.server.writer.run,
            run.prompt[node_id]["class_type"],
            params,
            inputs,
            run.prompt,
            run.extra_data.get("extra_pnginfo"),
        )
        if ui is not None:
            self._to_client(
                run,
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui,
                    "prompt_id": run.prompt_id,
                },
            )
        return ui

    async def _sample(self, run: RunState, node_id: str, params: dict, steps: int) -> None:
        """Sampler steps with progress, progress_state and previews; interruptible per step."""
        server = self.server
        previewer = None
        for step in range(1, steps + 1):
            await server.step_delay()
            self._check_interrupt()
            run.progress.update(node_id, step, steps)
            preview = None
            if server.settings.previews:
                if previewer is None:
                    final = await asyncio.to_thread(images.render, params, 0, images.PREVIEW_SIDE)
                    previewer = images.Previewer(final, int(params.get("seed", 0)))
                preview = previewer.jpeg(step, steps)
            metadata = server.supports_preview_metadata(run.client_id)
            if preview is not None and metadata:
                server.send_preview_with_metadata(
                    preview,
                    {
                        "node_id": node_id,
                        "prompt_id": run.prompt_id,
                        "display_node_id": node_id,
                        "parent_node_id": None,
                        "real_node_id": node_id,
                        "image_type": "image/jpeg",
                    },
                    run.client_id,
                )
            server.send_sync(
                "progress",
                {"value": step, "max": steps, "prompt_id": run.prompt_id, "node": node_id},
                run.client_id,
            )
            if preview is not None and not metadata:
                server.send_preview(preview, run.client_id)

    # -- helpers --------------------------------------------------------------------------
    def _check_interrupt(self) -> None:
        if self.server.interrupt_flag.is_set():
            raise Interrupted()

    def _salt(self, node_id: str, node: dict) -> object:
        """What else ComfyUI puts in a node's cache key.

        LoadImage's IS_CHANGED (here the file's size and mtime), and the node id for classes
        with a hidden UNIQUE_ID input (so such nodes are cached per node, e.g. GetImageSize).
        """
        class_type = node.get("class_type")
        salt = []
        if class_type in LOADERS_OF_INPUT_IMAGES:
            salt.append(self.server.input_file_stamp(str(node.get("inputs", {}).get("image", ""))))
        hidden = self.server.node_info(class_type).get("input", {}).get("hidden", {})
        kinds = {v[0] if isinstance(v, list) and v else v for v in hidden.values()}  # 0.27: [KIND]
        if "UNIQUE_ID" in kinds:
            salt.append(node_id)
        return salt

    def _resolve(self, run: RunState, node_id: str, missing_ok: bool = False) -> dict:
        """The node's inputs with links replaced by the linked outputs."""
        resolved = {}
        for name, value in run.prompt[node_id].get("inputs", {}).items():
            if graph.is_link(value):
                outputs = run.values.get(value[0])
                if outputs is None or value[1] >= len(outputs):
                    if missing_ok:
                        continue
                    raise RuntimeError(f"input {name} of node {node_id} is not available")
                resolved[name] = outputs[value[1]]
            else:
                resolved[name] = value
        return resolved

    def _hidden_inputs(self, run: RunState, node_id: str) -> dict:
        """The hidden inputs (prompt, extra_pnginfo, unique_id) a node declares."""
        info = self.server.node_info(run.prompt[node_id]["class_type"])
        hidden = info.get("input_order", {}).get("hidden", [])
        values = {
            "prompt": str(run.prompt),
            "extra_pnginfo": run.extra_data.get("extra_pnginfo"),
            "unique_id": node_id,
        }
        return {name: values.get(name) for name in hidden}
