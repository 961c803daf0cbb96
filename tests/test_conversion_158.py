"""Rules of frontend 1.58 that the golden files show only in part, each on a small graph
(found comparing with the real frontend on the template package; source file named)."""

from __future__ import annotations

from comfy_widgets.workflow.conversion import convert_ui_to_api
from tests.test_conversion import OI_0_27, graph, node


def convert(data, **kw):
    return convert_ui_to_api(data, OI_0_27, **kw)


def subgraph(sub_id, nodes, links, inputs=(), outputs=()):
    return {
        "id": sub_id,
        "name": "inner",
        "nodes": nodes,
        "links": links,
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


SUB = "11111111-2222-4333-8444-555555555555"


def test_inner_ids_that_collide_with_root_ids_are_renumbered():
    """subgraphDeduplication.ts: inner node 1 collides with root node 1 and becomes
    last_node_id + 1; the inner link follows it."""
    inner = [
        node(1, "EmptyImage", [64, 64, 1, 0], outputs=[("IMAGE", "IMAGE", [1])]),
        node(2, "SaveImage", ["x"], inputs=[("images", "IMAGE", 1)]),
    ]
    links = [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0}]
    root = [
        node(1, "EmptyImage", [8, 8, 1, 0], outputs=[("IMAGE", "IMAGE", [])]),
        node(5, SUB, []),
    ]
    api = convert(graph(root, [], [subgraph(SUB, inner, links)]))
    assert set(api) == {"1", "5:100", "5:2"}
    assert api["5:2"]["inputs"]["images"] == ["5:100", 0]
    assert api["5:100"]["inputs"]["width"] == 64


def test_a_subgraph_output_with_two_links_uses_the_first_one_stored():
    """linkDeduplication.ts keeps one link per target slot: the first in the list."""
    inner = [
        node(1, "EmptyImage", [16, 16, 1, 0], outputs=[("IMAGE", "IMAGE", [1])]),
        node(2, "EmptyImage", [32, 32, 1, 0], outputs=[("IMAGE", "IMAGE", [2])]),
    ]
    links = [
        {"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0},
        {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0},
    ]
    outputs = [{"name": "IMAGE", "type": "IMAGE", "linkIds": [2, 1]}]
    root = [
        node(5, SUB, [], outputs=[("IMAGE", "IMAGE", [9])]),
        node(6, "PreviewImage", [], inputs=[("images", "IMAGE", 9)]),
    ]
    api = convert(
        graph(root, [[9, 5, 0, 6, 0, "IMAGE"]], [subgraph(SUB, inner, links, (), outputs)])
    )
    assert api["6"]["inputs"]["images"] == ["5:1", 0]


def test_saved_inputs_of_another_dynamic_option_are_dropped():
    """dynamicWidgets.ts: an option the server does not offer has no child inputs, so a saved
    link into ``model.images.image_1`` is not sent."""
    api = convert(
        graph(
            [
                node(1, "LoadImage", ["a.png", "image"], outputs=[("IMAGE", "IMAGE", [1])]),
                node(
                    2,
                    "ClaudeNode",
                    ["hi", "No Such Model", 0, "fixed", ""],
                    inputs=[("model.images.image_1", "IMAGE", 1)],
                ),
            ],
            [[1, 1, 0, 2, 0, "IMAGE"]],
        )
    )
    assert api["2"]["inputs"] == {
        "prompt": "hi",
        "model": "No Such Model",
        "seed": 0,
        "system_prompt": "",
    }


def test_a_bypassed_match_type_node_passes_its_input_through():
    """A MatchType socket has the types it allows (IMAGE,MASK), so bypass finds it."""
    nodes = [
        node(1, "LoadImage", ["a.png", "image"], outputs=[("IMAGE", "IMAGE", [1])]),
        node(
            2,
            "ResizeImageMaskNode",
            ["scale by multiplier", 2, "lanczos"],
            mode=4,
            inputs=[("input", "IMAGE,MASK", 1)],
            outputs=[("resized", "IMAGE", [2])],
        ),
        node(3, "GetImageSize", [], inputs=[("image", "IMAGE", 2)]),
    ]
    api = convert(graph(nodes, [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]))
    assert api["3"]["inputs"] == {"image": ["1", 0]}


def test_frontend_widgets_of_today_are_sent():
    """Painter's mask (PAINTER widget), Preview3D's viewer file, CreateBoundingBoxes' list."""
    nodes = [
        node(1, "Painter", ["painter-1.png [input]", 512, 512, "#000000"]),
        node(2, "Preview3D", ["", ""], inputs=[("model_file", "STRING", None, "model_file")]),
        node(3, "CreateBoundingBoxes", [1024, 1024, [{"x": 1}]]),
    ]
    api = convert(graph(nodes, []))
    assert api["1"]["inputs"] == {
        "mask": "painter-1.png [input]",
        "width": 512,
        "height": 512,
        "bg_color": "#000000",
    }
    assert api["2"]["inputs"] == {"model_file": "", "image": ""}
    assert api["3"]["inputs"]["editor_state"] == {"__value__": [{"x": 1}]}


def test_placeholders_have_numbered_widgets_and_an_empty_title():
    nodes = [node(7, "NoSuchNode", ["a", 2], properties={"cnr_id": "pack", "ver": "1.0"})]
    api = convert(graph(nodes, []), allow_unknown_nodes=True)
    assert api["7"] == {
        "inputs": {"UNKNOWN": "a", "UNKNOWN_1": 2},
        "_meta": {"title": "", "cnr_id": "pack", "ver": "1.0"},
    }
