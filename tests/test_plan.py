"""Unit tests for variation plans: strategies, cycling, grids, range strings, seeds, validation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from comfy_widgets.engine.plan import (
    RANDOM_SEED_LIMIT,
    VariationPlan,
    increment,
    parse_range,
    sweep,
    values,
)
from comfy_widgets.errors import ParameterError


@dataclass
class Param:
    """The WorkflowParameter fields a plan reads (the real class has more)."""

    name: str
    key: str
    type: str
    value: object
    options: list | None = None
    is_integer: bool = False
    control_after_generate: str | None = None


PARAMS = [
    Param("seed", "3.seed", "seed", 1000, control_after_generate="randomize"),
    Param("steps", "3.steps", "number", 20, is_integer=True),
    Param("cfg", "3.cfg", "number", 8.0),
    Param("sampler_name", "3.sampler_name", "select", "euler", ["euler", "dpmpp_2m", "ddim"]),
    Param("prompt", "6.text", "string", "a cat"),
    Param("tiling", "9.tiling", "boolean", False),
]


def plan(count=None, mode="grid", plan_seed=7, params=PARAMS, **variations):
    return VariationPlan(variations, count=count, mode=mode, plan_seed=plan_seed, parameters=params)


def column(p: VariationPlan, name: str) -> list:
    return [item[name] for item in p.items]


# --- fixed, cycled, count ---------------------------------------------------------------------


def test_fixed_value_is_on_every_item_and_not_a_column():
    p = plan(count=3, steps=25)
    assert column(p, "steps") == [25, 25, 25]
    assert p.varied == []
    assert list(p.to_frame().columns) == ["batch_index", "seed"]


def test_list_cycles_across_repeats():
    p = plan(count=5, prompt=["cat", "dog"])
    assert column(p, "prompt") == ["cat", "dog", "cat", "dog", "cat"]
    assert p.varied == ["prompt"]


def test_count_defaults_to_longest_list_and_lists_pair_up():
    p = plan(prompt=["cat", "dog", "owl"], cfg=[5, 7])
    assert len(p) == 3
    assert [(i["prompt"], i["cfg"]) for i in p.items] == [("cat", 5), ("dog", 7), ("owl", 5)]


def test_count_defaults_to_one_without_lists():
    assert len(plan(steps=10)) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_count_is_rejected(bad):
    with pytest.raises(ParameterError, match="count"):
        plan(count=bad)


# --- axes: sweep, values, grid and zip ----------------------------------------------------------


def test_sweep_is_inclusive_and_keeps_ints():
    assert sweep(5, 9, 2).values() == [5, 7, 9]
    assert sweep(10, 31, 5).values() == [10, 15, 20, 25, 30]
    assert sweep(3, 1, -1).values() == [3, 2, 1]


def test_float_sweep_has_no_float_noise():
    assert sweep(1.5, 2.5, 0.25).values() == [1.5, 1.75, 2.0, 2.25, 2.5]
    assert sweep(0.1, 0.3, 0.1).values() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("args", [(1, 5, 0), (1, 5, -1), (5, 1, 1)])
def test_sweep_that_never_ends_is_rejected(args):
    with pytest.raises(ParameterError):
        sweep(*args)


def test_grid_is_cartesian_product_first_axis_slowest():
    p = plan(cfg=sweep(5, 7, 2), sampler_name=values(["euler", "ddim"]))
    assert [(i["cfg"], i["sampler_name"]) for i in p.items] == [
        (5, "euler"),
        (5, "ddim"),
        (7, "euler"),
        (7, "ddim"),
    ]
    assert p.varied == ["cfg", "sampler_name"]


def test_zip_pairs_axes():
    p = plan(mode="zip", cfg=sweep(5, 9, 2), steps=values([10, 20, 30]))
    assert [(i["cfg"], i["steps"]) for i in p.items] == [(5, 10), (7, 20), (9, 30)]


def test_zip_with_unequal_axes_names_them():
    with pytest.raises(ParameterError) as info:
        plan(mode="zip", cfg=sweep(5, 9, 2), steps=values([10, 20]))
    assert set(info.value.errors) == {"cfg", "steps"}


def test_unknown_mode_is_rejected():
    with pytest.raises(ParameterError, match="mode"):
        plan(mode="diagonal")


def test_count_repeats_the_grid_with_one_seed_and_prompt_per_repeat():
    p = plan(count=2, seed="random", prompt=["cat", "dog"], cfg=sweep(5, 9, 2))
    assert len(p) == 6
    first, second = p.items[:3], p.items[3:]
    assert {i["prompt"] for i in first} == {"cat"} and {i["prompt"] for i in second} == {"dog"}
    assert len({i["seed"] for i in first}) == 1 and len({i["seed"] for i in second}) == 1
    assert first[0]["seed"] != second[0]["seed"]
    assert column(p, "cfg") == [5, 7, 9, 5, 7, 9]


def test_empty_list_and_empty_values_are_rejected():
    with pytest.raises(ParameterError):
        plan(prompt=[])
    with pytest.raises(ParameterError):
        values([])


# --- A1111 range strings and comma lists --------------------------------------------------------


@pytest.mark.parametrize(
    "text, integer, expected",
    [
        ("10-30 (+5)", True, [10, 15, 20, 25, 30]),
        ("1-10 [5]", True, [1, 3, 5, 7, 10]),
        ("1-5", True, [1, 2, 3, 4, 5]),
        ("5-1", True, [5, 4, 3, 2, 1]),
        ("30-10 (-10)", True, [30, 20, 10]),
        ("1.5-2.5 (+0.25)", False, [1.5, 1.75, 2.0, 2.25, 2.5]),
        ("0-1 [3]", False, [0, 0.5, 1]),
        ("7.5", False, [7.5]),
        ("-2-2 (+2)", True, [-2, 0, 2]),
    ],
)
def test_parse_range(text, integer, expected):
    assert parse_range(text, integer=integer) == expected


@pytest.mark.parametrize("text", ["10-30 (+0)", "10-30 (-5)", "abc", "1-10 [0]"])
def test_parse_range_rejects_bad_ranges(text):
    with pytest.raises(ParameterError):
        parse_range(text, integer=True, name="steps")


def test_range_string_on_a_number_parameter_is_an_axis():
    p = plan(steps="10-30 (+10)", cfg="1.5-2.5 (+0.5)")
    assert [(i["steps"], i["cfg"]) for i in p.items][:3] == [(10, 1.5), (10, 2.0), (10, 2.5)]
    assert len(p) == 9


def test_comma_list_mixes_numbers_and_ranges():
    assert column(plan(steps="4, 10-20 (+5), 40"), "steps") == [4, 10, 15, 20, 40]


def test_comma_list_on_select_is_an_axis():
    assert column(plan(sampler_name="euler, ddim"), "sampler_name") == ["euler", "ddim"]


def test_comma_list_on_boolean_parses_true_false():
    assert column(plan(tiling="true, False"), "tiling") == [True, False]


def test_number_string_without_range_is_fixed_and_converted():
    p = plan(count=2, steps="25", cfg="7.5")
    assert column(p, "steps") == [25, 25] and column(p, "cfg") == [7.5, 7.5]
    assert p.varied == []


def test_prompt_strings_are_never_split():
    p = plan(prompt="a cat, oil painting, 1-10 [5]")
    assert column(p, "prompt") == ["a cat, oil painting, 1-10 [5]"]


def test_bad_range_string_names_the_parameter():
    with pytest.raises(ParameterError) as info:
        plan(cfg="5 to 9")
    assert "cfg" in info.value.errors


# --- seeds --------------------------------------------------------------------------------------


def test_random_seeds_are_reproducible_from_plan_seed():
    a = plan(count=6, seed="random", plan_seed=42)
    b = plan(count=6, seed="random", plan_seed=42)
    c = plan(count=6, seed="random", plan_seed=43)
    assert column(a, "seed") == column(b, "seed")
    assert column(a, "seed") != column(c, "seed")
    assert len(set(column(a, "seed"))) == 6
    assert all(0 <= s < RANDOM_SEED_LIMIT for s in column(a, "seed"))


def test_plan_seed_is_drawn_and_recorded_when_not_given():
    a = VariationPlan({"seed": "random"}, count=3, parameters=PARAMS)
    b = VariationPlan({"seed": "random"}, count=3, plan_seed=a.plan_seed, parameters=PARAMS)
    assert isinstance(a.plan_seed, int)
    assert column(a, "seed") == column(b, "seed")
    assert a.describe()["plan_seed"] == a.plan_seed


def test_increment_from_the_workflow_seed():
    assert column(plan(count=3, seed="increment"), "seed") == [1000, 1001, 1002]


@pytest.mark.parametrize("spec", [("increment", 100), increment(100)])
def test_increment_from_a_given_base(spec):
    assert column(plan(count=3, seed=spec), "seed") == [100, 101, 102]


def test_fixed_seed_keeps_the_workflow_seed_and_is_not_varied():
    p = plan(count=3, seed="fixed")
    assert column(p, "seed") == [1000, 1000, 1000]
    assert p.varied == []


def test_integer_seed_is_fixed_and_list_of_seeds_cycles():
    assert column(plan(count=2, seed=5), "seed") == [5, 5]
    assert column(plan(count=3, seed=[1, 2]), "seed") == [1, 2, 1]


def test_seed_axis_from_values_and_range_string():
    assert column(plan(seed=values([1, 2, 3])), "seed") == [1, 2, 3]
    assert column(plan(seed="1-3"), "seed") == [1, 2, 3]


def test_unknown_seed_strategy_is_rejected():
    with pytest.raises(ParameterError, match="random, increment, fixed"):
        plan(seed="shuffle")


def test_increment_without_a_known_base_asks_for_one():
    with pytest.raises(ParameterError, match="base"):
        VariationPlan({"seed": "increment"}, count=2)


def test_seed_strategy_by_canonical_key():
    p = plan(count=3, **{"3.seed": ("increment", 5)})
    assert column(p, "3.seed") == [5, 6, 7]
    assert p.to_frame()["seed"].tolist() == [5, 6, 7]


def test_unset_seed_follows_control_after_generate():
    randomize = plan(count=3)
    assert column(randomize, "seed")[0] == 1000  # first run as shown, like ComfyUI
    assert len(set(column(randomize, "seed"))) == 3
    inc = [Param("seed", "3.seed", "seed", 50, control_after_generate="increment")]
    assert column(plan(count=3, params=inc), "seed") == [50, 51, 52]
    dec = [Param("seed", "3.seed", "seed", 50, control_after_generate="decrement")]
    assert column(plan(count=3, params=dec), "seed") == [50, 49, 48]
    fixed = [Param("seed", "3.seed", "seed", 50, control_after_generate="fixed")]
    assert column(plan(count=3, params=fixed), "seed") == [50, 50, 50]


def test_every_seed_parameter_follows_its_own_control():
    two = [
        Param("3.seed", "3.seed", "seed", 10, control_after_generate="increment"),
        Param("11.seed", "11.seed", "seed", 20, control_after_generate="fixed"),
    ]
    p = plan(count=2, params=two)
    assert column(p, "3.seed") == [10, 11] and column(p, "11.seed") == [20, 20]
    assert p.to_frame()["seed"].tolist() == [10, 11]


# --- the plan DataFrame and validation ----------------------------------------------------------


def test_plan_frame_has_index_varied_columns_and_seed():
    p = plan(count=2, seed="increment", prompt=["cat", "dog"], cfg=sweep(5, 7, 2), steps=30)
    df = p.to_frame()
    assert list(df.columns) == ["batch_index", "prompt", "cfg", "seed"]
    assert df["batch_index"].tolist() == [0, 1, 2, 3]
    assert df["seed"].tolist() == [1000, 1000, 1001, 1001]
    assert p.varied == ["seed", "prompt", "cfg"]


def test_describe_is_plain_data():
    d = plan(count=2, seed="random", cfg=sweep(5, 7, 2), prompt=["a", "b"], steps=3).describe()
    assert d["variations"] == {
        "seed": {"seed": "random", "base": None},
        "cfg": {"axis": [5, 7]},
        "prompt": {"cycle": ["a", "b"]},
        "steps": 3,
    }
    assert (d["count"], d["mode"], d["total"]) == (2, "grid", 4)


class RangeCheckingWorkflow:
    """A workflow stand-in whose ``apply`` rejects cfg above 10, like Workflow.apply does."""

    def __init__(self):
        self.calls = 0

    def apply(self, values):
        self.calls += 1
        if values.get("cfg", 0) > 10:
            raise ParameterError("cfg too big", errors={"cfg": f"{values['cfg']} is above max 10"})
        return {"3": {"class_type": "KSampler", "inputs": dict(values)}}


def test_validate_validates_every_item():
    wf = RangeCheckingWorkflow()
    prompts = plan(cfg=sweep(5, 9, 2)).validate(wf.apply)
    assert [p["3"]["inputs"]["cfg"] for p in prompts] == [5, 7, 9]
    assert wf.calls == 3


def test_validate_names_the_first_bad_item_and_parameter():
    with pytest.raises(ParameterError) as info:
        plan(count=2, cfg=sweep(6, 14, 4)).validate(RangeCheckingWorkflow().apply)
    assert "batch item 2" in str(info.value)
    assert info.value.errors["cfg"].startswith("item 2 (cfg=14)")
