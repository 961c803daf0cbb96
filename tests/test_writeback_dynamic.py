"""PNG workflow chunks the frontend loads back as the prompt that was sent: dynamic-prompt text
stored escaped, unsafe integers leave the graph out (the frontend's pass is modelled by
``comfy_widgets.workflow.frontend_text``; the browser test checks the real frontend)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfy_widgets.workflow.frontend_text import escape_dynamic_prompt, process_dynamic_prompt
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_for, ui_graph_with_values
from tests.shared_data import WORKFLOWS

SD15 = WORKFLOWS / "ui/sd15_txt2img_default.json"
TEXTS = [
    "a {red|blue} fox",
    "{key} stays a placeholder",
    "a \\{literal\\} brace and a \\| bar",
    "// not a comment\nsecond line",
    "/* kept */ text",
    "see http://example.org/a|b",
    "{{nested|x}|y}",
    "back\\slash n",
]


class Rng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("text", TEXTS)
def test_the_stored_text_converts_back_to_the_text_sent(text):
    wf = Workflow.load(SD15)
    graph = ui_graph_with_values(wf, {"prompt": text, "seed": 5})
    assert graph is not None
    stored = next(n for n in graph["nodes"] if n["id"] == 6)["widgets_values"][0]
    assert stored != text or "{" not in text, "dynamic syntax is stored escaped"
    for seed in range(8):  # the frontend chooses at random: every choice must give the same
        random.seed(seed)
        assert Workflow.load(graph).to_api()["6"]["inputs"]["text"] == text


def test_text_the_frontend_cannot_reproduce_leaves_the_graph_out():
    wf = Workflow.load(SD15)
    assert ui_graph_with_values(wf, {"prompt": "ends in a backslash\\"}) is None


def test_a_default_text_with_choices_is_stored_as_the_choice_that_was_sent():
    source = json.loads(SD15.read_text())
    next(n for n in source["nodes"] if n["id"] == 6)["widgets_values"][0] = "a {cat|dog|owl}"
    wf = Workflow.load(source)
    sent = wf.apply({"seed": 3})
    graph = ui_graph_for(wf, {"seed": 3}, sent)
    assert graph is not None
    for seed in range(8):
        random.seed(seed)
        assert Workflow.load(graph).to_api()["6"]["inputs"]["text"] == sent["6"]["inputs"]["text"]


def test_seeds_above_2_53_leave_the_graph_out():
    wf = Workflow.load(SD15)
    assert ui_graph_with_values(wf, {"seed": 2**53 - 1}) is not None
    assert ui_graph_with_values(wf, {"seed": 2**53 + 1}) is None
    prompt = wf.apply({"seed": 2**60})
    assert ui_graph_for(wf, {"seed": 2**60}, prompt) is None


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("ab{}|/*\\\n x"), max_size=16))
def test_escaped_text_is_reproduced_whatever_the_frontend_chooses(text):
    escaped = escape_dynamic_prompt(text)
    if escaped is None:
        assert text.endswith("\\") or "\\" in text, "only backslash cases are given up"
        return
    for value in (0.0, 0.3, 0.7, 0.999):
        assert process_dynamic_prompt(escaped, Rng(value)) == text
