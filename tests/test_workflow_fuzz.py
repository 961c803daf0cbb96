"""Bad input to Workflow.load/to_api/parameters: always a WorkflowError naming the place.

Mutations of every shared workflow (issue 14 item 9), the exact cases found by fuzzing, and
PNG files (their ``workflow`` chunk, else their ``prompt`` chunk, as ComfyUI reads them).
"""

from __future__ import annotations

import copy
import io
import json
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from comfy_widgets.errors import ComfyWidgetsError, WorkflowError
from comfy_widgets.workflow.pngmeta import MAX_TEXT_BYTES, with_text_chunks
from comfy_widgets.workflow.workflow import Workflow, content_hash
from tests.fuzz_mutations import load_shared, mutate, mutate_text

SHARED = load_shared()
UI = json.loads(dict((name, text) for name, _, text in SHARED)["ui/sd15_txt2img_default"])


def exercise(source: object) -> None:
    """Everything a user does with a loaded workflow; only library errors may come out."""
    try:
        wf = Workflow.load(source)  # type: ignore[arg-type]
        wf.to_api()
        wf.parameters()
        assert len(wf.content_hash) == 64
    except ComfyWidgetsError:
        pass


def test_every_shared_workflow_is_fuzzed():
    folders = {name.rsplit("/", 1)[0] for name, _, _ in SHARED}
    assert folders == {"ui", "api", "resaved"} and len(SHARED) == 46


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, len(SHARED) - 1), seed=st.integers(0, 2**32 - 1))
def test_mutated_workflows_fail_only_with_library_errors(index: int, seed: int):
    _, doc, text = SHARED[index]
    rng = random.Random(seed)
    exercise(mutate(doc, rng))
    exercise(mutate_text(text, rng))


def with_node(**changes) -> dict:
    ui = copy.deepcopy(UI)
    ui["nodes"][0].update(changes)
    return ui


def raises(source: object, *words: str) -> str:
    with pytest.raises(WorkflowError) as info:
        wf = Workflow.load(source)  # type: ignore[arg-type]
        wf.parameters()
    message = str(info.value)
    for word in words:
        assert word in message
    return message


def test_a_link_slot_that_is_not_a_number_names_the_link():
    ui = copy.deepcopy(UI)
    link_id = ui["links"][0][0]
    ui["links"][0][2] = "CLIP"
    raises(ui, f"link {link_id}", "origin slot 'CLIP'")


def test_nodes_and_slots_of_the_wrong_kind_name_the_node():
    node_id = UI["nodes"][0]["id"]
    raises(with_node(inputs=7), f"node {node_id}", "'inputs' that is not a list")
    raises(with_node(outputs=[1]), f"output #0 of node {node_id}")
    raises(with_node(type=["KSampler"]), f"node {node_id} has no type")
    raises(with_node(id=None), "node #0", "no valid id")
    raises(with_node(mode="x"), f"node {node_id}", "mode")


def test_deep_nesting_is_refused_before_it_exhausts_the_stack():
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    raises(with_node(widgets_values=deep), "nested too deeply")
    raises("[" * 100_000 + "]" * 100_000, "nested too deeply")
    shallower: object = 1
    for _ in range(900):
        shallower = [shallower]
    exercise(with_node(widgets_values=[shallower]))


def test_lone_surrogates_and_huge_numbers_do_not_break_hashing_or_parameters():
    ui = copy.deepcopy(UI)
    sampler = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][0] = 2**80
    sampler["title"] = "x\udfffy"
    wf = Workflow.load(ui)
    assert len(wf.content_hash) == 64 and content_hash({"a": "\ud800"}) != content_hash({})
    wf.parameters()
    api = {"1": {"class_type": "KSampler", "inputs": {"seed": float("inf"), "steps": 2**70}}}
    Workflow.load(api).parameters()


def test_api_nodes_without_a_class_name_are_named():
    raises({"5": {"class_type": 3, "inputs": {}}}, "node 5", "class_type")
    raises({"5": {"class_type": "KSampler", "inputs": []}}, "node 5", "inputs")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_png_gives_its_workflow_chunk_else_its_prompt(tmp_path):
    wf = Workflow.load(UI)
    api = wf.to_api()
    both = with_text_chunks(png_bytes(), {"workflow": json.dumps(UI), "prompt": json.dumps(api)})
    from_png = Workflow.load(both)
    assert from_png.format == "ui" and from_png.to_api() == api
    path = tmp_path / "ComfyUI_00001_.png"
    path.write_bytes(with_text_chunks(png_bytes(), {"prompt": json.dumps(api)}))
    from_file = Workflow.load(path)
    assert from_file.format == "api" and from_file.name == "ComfyUI_00001_"
    assert from_file.to_api() == api
    assert Workflow.load(str(path)).format == "api"


def test_pngs_without_a_workflow_or_damaged_ones_say_so(tmp_path):
    raises(png_bytes(), "no 'workflow' or 'prompt' text chunk")
    raises(with_text_chunks(png_bytes(), {"workflow": "{not json"}), "'workflow' text", "JSON")
    bomb = zlib.compress(b" " * (MAX_TEXT_BYTES + 10))
    body = b"workflow\0\0" + bomb
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + b"\0\0\0\0"
    png = png_bytes()
    raises(png[:8] + chunk + png[8:], "damaged", "inflates to more than")
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe{}")
    raises(path, "neither JSON text", "nor a PNG")
