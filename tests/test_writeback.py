"""The UI graph written back with applied values converts to exactly the applied prompt."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_widgets.workflow.conversion import widgets_values_index
from comfy_widgets.workflow.frontend_text import process_dynamic_prompt
from comfy_widgets.workflow.parameters import WorkflowParameter
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_with_values
from tests.shared_data import WORKFLOWS

UI = {path.stem: Workflow.load(path) for path in sorted((WORKFLOWS / "ui").glob("*.json"))}
API = [Workflow.load(path) for path in sorted((WORKFLOWS / "api").glob("*.json"))]
JS_SAFE = 2**53 - 1
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Text the frontend's dynamic prompt pass leaves alone (no ``{a|b}``, comments or escapes).
PLAIN_TEXT = st.text(
    st.characters(exclude_characters="{}|/\\", exclude_categories=("Cs",)), max_size=30
)


def value_for(param: WorkflowParameter, stable: bool) -> st.SearchStrategy:
    """Valid values for one parameter; ``stable`` ones survive the frontend's widget callbacks
    (whole-number floats, text without dynamic prompt syntax)."""
    if param.type in ("number", "seed"):
        low = max(param.min if param.min is not None else -JS_SAFE, -JS_SAFE)
        high = min(param.max if param.max is not None else JS_SAFE, JS_SAFE)
        step = int(param.step or 1)
        if param.is_integer and stable and step > 1:
            first = int(low)  # min plus whole steps: what the INT widget's callback keeps
            return st.integers(0, (int(high) - first) // step).map(lambda k: first + k * step)
        if param.is_integer:
            return st.integers(int(low), int(high))
        if stable:
            return (
                st.integers(int(low) + 1, int(high)).map(float)
                if high - low >= 2
                else st.just(float(param.value))
            )
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if param.type == "select":
        return st.sampled_from(param.options)
    if param.type == "boolean":
        return st.booleans()
    if param.type == "image":
        return st.text(min_size=1, max_size=20)
    return PLAIN_TEXT if stable else st.text(max_size=30)


@st.composite
def workflow_and_values(draw, stable: bool):
    """A UI workflow and valid values for a random subset of its parameters."""
    wf = draw(st.sampled_from(list(UI.values())))
    params = [p for p in wf.parameters() if p.type != "select" or p.options]
    chosen = draw(
        st.lists(st.sampled_from(params), min_size=1, max_size=6, unique_by=lambda p: p.key)
    )
    use_names = draw(st.booleans())
    return wf, {p.name if use_names else p.key: draw(value_for(p, stable)) for p in chosen}


def same_modulo_dynamic_prompts(got: dict, expected: dict) -> bool:
    """Prompt equality where a text may differ only by the frontend's ``{a|b}`` choice or
    comment stripping."""
    if got.keys() != expected.keys():
        return False
    for node_id, node in expected.items():
        if got[node_id]["inputs"].keys() != node["inputs"].keys():
            return False
        for name, value in node["inputs"].items():
            other = got[node_id]["inputs"][name]
            if other == value and type(other) is type(value):
                continue
            if isinstance(value, float) and other == value:
                continue
            if not (
                isinstance(value, str)
                and isinstance(other, str)
                and ("{" in value or other == process_dynamic_prompt(value))
            ):
                return False
    return True


@SETTINGS
@given(workflow_and_values(stable=False))
def test_a_written_back_graph_converts_to_the_applied_prompt(case):
    wf, values = case
    graph = ui_graph_with_values(wf, values)
    if graph is not None:
        assert same_modulo_dynamic_prompts(Workflow.load(graph).to_api(), wf.apply(values))


@SETTINGS
@given(workflow_and_values(stable=True))
def test_values_the_frontend_keeps_are_always_written_back(case):
    wf, values = case
    graph = ui_graph_with_values(wf, values)
    assert graph is not None
    assert same_modulo_dynamic_prompts(Workflow.load(graph).to_api(), wf.apply(values))


def test_the_source_workflow_is_not_changed():
    wf = UI["sd15_txt2img_default"]
    before = json.dumps(wf.source, sort_keys=True)
    ui_graph_with_values(wf, {"seed": 5, "steps": 3})
    assert json.dumps(wf.source, sort_keys=True) == before


def node_of(graph: dict, node_type: str) -> dict:
    return next(n for n in graph["nodes"] if n["type"] == node_type)


def test_the_seed_lands_before_its_hidden_control_value():
    graph = ui_graph_with_values(UI["sd15_txt2img_default"], {"seed": 1234, "steps": 7})
    sampler = node_of(graph, "KSampler")
    assert sampler["widgets_values"][:3] == [1234, "randomize", 7]


def test_a_primitive_node_gets_the_value_of_the_inputs_it_feeds():
    wf = UI["sdxl_base_refiner"]
    param = wf.parameter("prompt")
    graph = ui_graph_with_values(wf, {"prompt": "a red fox"})
    primitives = [n for n in graph["nodes"] if n["type"] == "PrimitiveNode"]
    assert param.linked_keys
    assert any(n["widgets_values"][0] == "a red fox" for n in primitives)
    for key in (param.key, *param.linked_keys):
        node_id, _, field = key.rpartition(".")
        assert Workflow.load(graph).to_api()[node_id]["inputs"][field] == "a red fox"


def test_a_subgraph_inner_value_is_written_where_the_instance_reads_it():
    wf = UI["subgraph_z_image_turbo"]
    seed = next(p for p in wf.parameters() if p.key.endswith(".seed"))
    graph = ui_graph_with_values(wf, {seed.key: 99})
    inner = node_of(graph["definitions"]["subgraphs"][0], "KSampler")
    assert inner["widgets_values"][0] == 99
    assert Workflow.load(graph).to_api()[seed.node_id]["inputs"]["seed"] == 99


def test_an_instance_that_stores_its_promoted_values_gets_the_value_there():
    source = json.loads(json.dumps(UI["subgraph_z_image_turbo"].source))
    instance = next(n for n in source["nodes"] if n["type"].count("-") == 4)
    instance["widgets_values"] = ["a lighthouse", 1024, 768]
    wf = Workflow.load(source)
    height = next(p for p in wf.parameters() if p.key.endswith(".height"))
    assert height.value == 768
    graph = ui_graph_with_values(wf, {height.key: 512})
    written = next(n for n in graph["nodes"] if n["id"] == instance["id"])
    assert written["widgets_values"] == ["a lighthouse", 1024, 512]
    assert Workflow.load(graph).to_api() == wf.apply({height.key: 512})


def test_named_widget_values_are_updated_too():
    source = json.loads(json.dumps(UI["sd15_txt2img_default"].source))
    sampler = node_of(source, "KSampler")
    sampler["widgets_values_named"] = {"seed": 1, "steps": 20}
    graph = ui_graph_with_values(Workflow.load(source), {"steps": 9})
    assert node_of(graph, "KSampler")["widgets_values_named"] == {"seed": 1, "steps": 9}


def test_a_value_the_frontend_would_round_gives_no_graph():
    wf = UI["primitive_reroute_hidream_e1_1"]
    assert ui_graph_with_values(wf, {"cfg_conds": 2.5}) is not None
    assert ui_graph_with_values(wf, {"cfg_conds": 1.23456789}) is None


def test_a_short_widgets_values_is_padded_with_what_loading_gives():
    """Saves older than the node definition lack the newer widgets' values: writing one pads
    the list with the values the frontend would load, so the graph still converts the same."""
    source = json.loads(json.dumps(UI["sd15_txt2img_default"].source))
    sampler = node_of(source, "KSampler")
    sampler["widgets_values"] = sampler["widgets_values"][:3]
    wf = Workflow.load(source)
    assert ui_graph_with_values(wf, {"seed": 3}) is not None
    graph = ui_graph_with_values(wf, {"denoise": 0.5})
    assert graph is not None
    stored = node_of(graph, "KSampler")["widgets_values"]
    assert len(stored) == 7 and stored[-1] == 0.5
    assert Workflow.load(graph).to_api() == wf.apply(denoise=0.5)


def test_a_value_without_a_stored_place_gives_no_graph():
    source = json.loads(json.dumps(UI["sd15_txt2img_default"].source))
    del node_of(source, "KSampler")["widgets_values"]
    wf = Workflow.load(source)
    assert ui_graph_with_values(wf, {"denoise": 0.5}) is None


def test_api_workflows_have_no_graph():
    assert API
    for wf in API:
        param = wf.parameters()[0]
        assert ui_graph_with_values(wf, {param.key: param.value}) is None


def test_widgets_values_index_counts_the_hidden_control_value():
    wf = UI["sd15_txt2img_default"]
    sampler = node_of(wf.source, "KSampler")
    index = {
        name: widgets_values_index(wf.object_info, sampler, name)
        for name in ("seed", "control_after_generate", "steps", "denoise", "model")
    }
    assert index == {
        "seed": 0,
        "control_after_generate": 1,
        "steps": 2,
        "denoise": 6,
        "model": None,
    }


def test_widgets_values_index_skips_old_force_input_values():
    oi = UI["sd15_txt2img_default"].object_info
    forced = next(name for name in oi.raw if oi.migration_plan(name) is not None)
    forced_at, count = oi.migration_plan(forced)
    node = {"type": forced, "widgets_values": list(range(count))}
    names = [w.name for w in oi.widgets(forced) if w.stored]
    kept = [i for i, is_forced in enumerate(forced_at) if not is_forced]
    kept += list(range(len(forced_at), count))
    assert [widgets_values_index(oi, node, n) for n in names] == kept[: len(names)]
