"""Property tests for apply: input never mutated, canonical keys work, extract(apply(v)) == v."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_widgets.workflow.parameters import WorkflowParameter
from comfy_widgets.workflow.workflow import Workflow, apply_parameters
from tests import shared_data

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"

SHARED = shared_data.WORKFLOWS
FILES = sorted((SHARED / "ui").glob("*.json")) + sorted((SHARED / "api").glob("*.json"))
WORKFLOWS = [Workflow.load(path) for path in FILES]
JS_SAFE = 2**53 - 1
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def value_for(param: WorkflowParameter) -> st.SearchStrategy:
    """Valid values for one parameter, inside its real range or options."""
    if param.type in ("number", "seed"):
        low = param.min if param.min is not None else -JS_SAFE
        high = param.max if param.max is not None else JS_SAFE
        low, high = max(low, -JS_SAFE), min(high, JS_SAFE)
        if param.is_integer:
            return st.integers(int(low), int(high))
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if param.type == "select":
        return st.sampled_from(param.options) if param.options else st.text(min_size=1)
    if param.type == "boolean":
        return st.booleans()
    if param.type == "image":
        return st.text(min_size=1, max_size=20)
    return st.text(max_size=30)


@st.composite
def workflow_and_values(draw):
    """A workflow and valid values for a random subset of its parameters, by canonical key."""
    wf = draw(st.sampled_from(WORKFLOWS))
    params = [p for p in wf.parameters() if p.type != "select" or p.options]
    chosen = draw(
        st.lists(st.sampled_from(params), min_size=1, max_size=6, unique_by=lambda p: p.key)
    )
    return wf, {p.key: draw(value_for(p)) for p in chosen}


@SETTINGS
@given(workflow_and_values())
def test_apply_never_mutates_its_input(case):
    wf, values = case
    source = json.loads(json.dumps(wf.source))
    before_source = json.dumps(source, sort_keys=True)
    before_api = json.dumps(wf.to_api(), sort_keys=True)
    apply_parameters(source, dict(values))
    wf.apply(values)
    assert json.dumps(source, sort_keys=True) == before_source
    assert json.dumps(wf.to_api(), sort_keys=True) == before_api


@SETTINGS
@given(workflow_and_values())
def test_canonical_keys_always_work(case):
    wf, values = case
    prompt = wf.apply(values)
    for key, value in values.items():
        node_id, _, field = key.rpartition(".")
        sent = prompt[node_id]["inputs"][field]
        assert (
            sent == value
            and type(sent) is type(value)
            or (isinstance(value, float) and value.is_integer() and sent == value)
        )


@SETTINGS
@given(workflow_and_values())
def test_extracting_from_the_applied_prompt_gives_the_values_back(case):
    wf, values = case
    applied = Workflow.load(wf.apply(values), wf.object_info)
    extracted = {p.key: p.value for p in applied.parameters()}
    for key, value in values.items():
        assert extracted[key] == value


@SETTINGS
@given(st.sampled_from(WORKFLOWS), st.data())
def test_friendly_names_work_like_their_canonical_key(wf, data):
    named = [p for p in wf.parameters() if p.name != p.key and (p.type != "select" or p.options)]
    param = data.draw(st.sampled_from(named))
    value = data.draw(value_for(param))
    assert wf.apply({param.name: value}) == wf.apply({param.key: value})


@SETTINGS
@given(workflow_and_values())
def test_apply_shared_equals_apply_and_shares_only_unchanged_nodes(case):
    wf, values = case
    api = wf.to_api()
    shared, owned = wf.apply_shared(values), wf.apply(values)
    assert shared == owned
    assert wf.to_api() == api  # the workflow is untouched
    again = wf.apply_shared(values)
    for node_id, node in shared.items():
        if node is again[node_id]:  # shared between items: the workflow's node, as it was
            assert node == api[node_id]
        if node != api[node_id]:  # changed by the values: each item's own
            assert node is not again[node_id] and node["inputs"] is not again[node_id]["inputs"]
    assert all(owned[n] is not wf.apply(values)[n] for n in owned)  # apply: a copy every time


def test_batch_items_share_every_node_their_values_leave_alone():
    wf = Workflow.load(EXAMPLES / "sd15_txt2img_api.json")
    seed = wf.parameter("seed").key.partition(".")[0]
    first, second = wf.apply_shared({"seed": 1}), wf.apply_shared({"seed": 2})
    assert first[seed]["inputs"]["seed"] == 1 and second[seed]["inputs"]["seed"] == 2
    assert [n for n in first if first[n] is not second[n]] == [seed]
