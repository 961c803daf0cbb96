"""Variation plans: the values every item of a batch sets, computed before anything is queued.

A batch is ``count`` *repeats* of a set of *cells*:

* **cells** come from the axes: ``sweep(start, stop, step)``, ``values([...])`` and, for number and
  select parameters, A1111-style strings (``"10-30 (+5)"``, ``"1-10 [5]"``, ``"1.5-2.5 (+0.25)"``,
  ``"euler, dpmpp_2m"``). ``mode="grid"`` takes their cartesian product, ``mode="zip"`` pairs them
  element-wise (they must have the same length).
* **per-repeat values**: a plain list is cycled (repeat ``r`` uses ``items[r % len]``) and a seed
  strategy gives one seed per repeat: ``"random"`` (drawn from ``random.Random(plan_seed)``),
  ``"increment"`` (from the workflow's seed, or ``("increment", base)`` / ``increment(base)``) and
  ``"fixed"``.

So every cell of an X/Y grid is made with the same seed and prompt, as in A1111's X/Y plot, and
``count`` adds more samples per cell. ``count`` defaults to the longest plain list (1 without
lists). A seed that is not given follows the workflow's ``control_after_generate`` the way
ComfyUI's own batch count does: the first repeat keeps the workflow's seed, later ones are
randomized, incremented or kept.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from comfy_widgets.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

# ComfyUI's frontend draws randomized seeds below 2**50 (1125899906842624); so do we.
RANDOM_SEED_LIMIT = 2**50
SEED_KINDS = ("random", "increment", "fixed")
MODES = ("grid", "zip")
# A plan larger than this is refused before any item is built (``max_items=`` raises it): a typo
# such as "1-10000000" or count=10**6 should get an error, not exhaust the kernel's memory.
MAX_ITEMS = 100_000
# One axis (a range or sweep) longer than this is refused while it is parsed, whatever max_items.
MAX_AXIS_VALUES = 1_000_000

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE_RE = re.compile(
    rf"^\s*(?P<start>{_NUMBER})\s*-\s*(?P<stop>{_NUMBER})\s*"
    rf"(?:\(\s*(?P<step>{_NUMBER})\s*\)|\[\s*(?P<num>\d+)\s*\])?\s*$"
)
_NUMBER_RE = re.compile(rf"^\s*{_NUMBER}\s*$")
T = TypeVar("T")


@dataclass(frozen=True)
class Sweep:
    """An axis from ``start`` to ``stop`` (inclusive when reached) in steps of ``step``."""

    start: float
    stop: float
    step: float = 1

    def values(self) -> list:
        """The numbers of the sweep; ints when start, stop and step are all ints."""
        return _arange(self.start, self.stop, self.step)


@dataclass(frozen=True)
class Values:
    """An explicit axis: each item is one cell of the grid (unlike a plain list, which cycles)."""

    items: tuple

    def values(self) -> list:
        """The axis values, in order."""
        return list(self.items)


@dataclass(frozen=True)
class SeedStrategy:
    """How seeds change from one repeat to the next: random, increment (from ``base``) or fixed."""

    kind: str
    base: int | None = None


def sweep(start: float, stop: float, step: float = 1) -> Sweep:
    """An axis from ``start`` to ``stop`` inclusive, e.g. ``sweep(5, 9, 2)`` -> 5, 7, 9."""
    _arange(start, stop, step)  # validate now, where the user typed it
    return Sweep(start, stop, step)


def values(items: Iterable[Any]) -> Values:
    """An explicit axis of values (use a plain list to cycle values across repeats instead)."""
    items = tuple(items)
    if not items:
        raise ParameterError("values() needs at least one value")
    return Values(items)


def increment(base: int | None = None) -> SeedStrategy:
    """Seeds ``base, base+1, ...`` per repeat; ``base=None`` starts at the workflow's seed."""
    return SeedStrategy("increment", base)


def new_plan_seed() -> int:
    """A fresh plan seed, recorded with the batch so the same random seeds can be drawn again."""
    return secrets.randbelow(2**32)


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class _Fixed:
    """A value every item uses."""

    name: str
    value: Any


@dataclass
class _Cycle:
    """A plain list: repeat ``r`` uses ``items[r % len(items)]``."""

    name: str
    items: list


@dataclass
class _Axis:
    """An axis: each value is one cell (grid or zip with the other axes)."""

    name: str
    items: list


@dataclass
class _Seed:
    """One seed per repeat: ``random``, or ``increment``/``decrement``/``fixed`` from ``base``.

    ``base`` is always set for the three that count from it; for ``random`` it is the
    workflow's seed, which the first repeat keeps when the user did not vary the seed.
    """

    name: str
    strategy: SeedStrategy


#: One normalized variation; which class it is says how items take their value.
_Spec = _Fixed | _Cycle | _Axis | _Seed


class VariationPlan:
    """Every item of a batch as a dict of parameter values, plus the plan as a DataFrame.

    ``parameters`` (``Workflow.parameters()``) tells which names are seeds, numbers or selects,
    the workflow's current seed (base for ``"increment"``/``"fixed"``) and its
    ``control_after_generate``. Without it every string is taken literally.
    """

    def __init__(
        self,
        variations: dict[str, Any],
        *,
        count: int | None = None,
        mode: str = "grid",
        plan_seed: int | None = None,
        parameters: Sequence[Any] | None = None,
        max_items: int = MAX_ITEMS,
    ):
        if mode not in MODES:
            raise ParameterError(
                f"mode must be 'grid' or 'zip', not {mode!r}", errors={"mode": mode}
            )
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise ParameterError(
                f"count must be an integer >= 1, not {count!r}", errors={"count": "must be >= 1"}
            )
        self.mode = mode
        self.plan_seed = new_plan_seed() if plan_seed is None else _plan_seed(plan_seed)
        self.variations = dict(variations)
        self._params = _index_parameters(parameters or [])
        self._specs = [
            _normalize(name, v, self._params.get(name)) for name, v in variations.items()
        ]
        self._specs += _default_seed_specs(self._specs, parameters or [])
        self.count = count if count is not None else _default_count(self._specs)
        _check_size(self._specs, mode, self.count, max_items)
        self.cells = _cells(self._specs, mode)
        self.items = self._build_items()
        self.seed_name = self._seed_column_source()

    # -- derived views --

    @functools.cached_property
    def varied(self) -> list[str]:
        """Names the user varied (lists, axes, non-fixed seeds), in the order given."""
        return [s.name for s in self._specs if s.name in self.variations and not _is_fixed(s)]

    @functools.cached_property
    def columns(self) -> list[str]:
        """The per-parameter DataFrame columns: each varied name except the seed, then ``seed``."""
        return [n for n in self.varied if n != self.seed_name] + ["seed"]

    def __len__(self) -> int:
        return len(self.items)

    def seed_of(self, index: int) -> int | None:
        """The seed item ``index`` uses (the first seed parameter), or None without a seed."""
        return self.items[index].get(self.seed_name) if self.seed_name else None

    def row(self, index: int) -> dict[str, Any]:
        """Item ``index`` as the plan's DataFrame columns (varied values and seed)."""
        values_ = self.items[index]
        row = {n: values_.get(n) for n in self.columns if n != "seed"}
        row["seed"] = self.seed_of(index)
        return row

    def to_frame(self) -> pd.DataFrame:
        """The plan as a DataFrame: ``batch_index``, one column per varied parameter, ``seed``."""
        import pandas as pd

        rows = [{"batch_index": i, **self.row(i)} for i in range(len(self.items))]
        return pd.DataFrame(rows, columns=["batch_index", *self.columns])

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (count, mode, plan_seed, variations) to record with the batch."""
        return {
            "count": self.count,
            "mode": self.mode,
            "plan_seed": self.plan_seed,
            "total": len(self.items),
            "variations": {
                s.name: _describe_spec(s) for s in self._specs if s.name in self.variations
            },
        }

    def validate(self, prepare: Callable[[dict[str, Any]], T]) -> list[T]:
        """Run ``prepare`` (e.g. ``workflow.apply``) on every item; return its results in order.

        Collects the ParameterErrors into one that names, per bad parameter, the first item
        that failed, so a bad value anywhere in a sweep queues nothing.
        """
        prepared: list[T] = []
        errors: dict[str, str] = {}
        first_bad: int | None = None
        for index, item in enumerate(self.items):
            try:
                prepared.append(prepare(item))
            except ParameterError as exc:
                first_bad = index if first_bad is None else first_bad
                for name, message in (exc.errors or {"?": str(exc)}).items():
                    errors.setdefault(name, f"item {index} ({name}={item.get(name)!r}): {message}")
        if errors:
            detail = "; ".join(errors.values())
            raise ParameterError(
                f"batch item {first_bad} is invalid, nothing was queued: {detail}", errors=errors
            )
        return prepared

    # -- building --

    def _build_items(self) -> list[dict[str, Any]]:
        """Repeat-major: for each repeat, every cell, with that repeat's cycled values and seeds."""
        seeds = self._draw_seeds()
        items = []
        for r in range(self.count):
            per_repeat = {}
            for spec in self._specs:
                if isinstance(spec, _Fixed):
                    per_repeat[spec.name] = spec.value
                elif isinstance(spec, _Cycle):
                    per_repeat[spec.name] = spec.items[r % len(spec.items)]
                elif isinstance(spec, _Seed):
                    per_repeat[spec.name] = seeds[spec.name][r]
            for cell in self.cells:
                item = {}
                for spec in self._specs:
                    item[spec.name] = (
                        cell[spec.name] if isinstance(spec, _Axis) else per_repeat[spec.name]
                    )
                items.append(item)
        return items

    def _draw_seeds(self) -> dict[str, list[int]]:
        """One seed per repeat for each seed strategy; random ones from ``Random(plan_seed)``."""
        rng = random.Random(self.plan_seed)
        seeds: dict[str, list[int]] = {}
        for spec in self._specs:
            if not isinstance(spec, _Seed):
                continue
            kind, base = spec.strategy.kind, spec.strategy.base
            if kind == "random":
                drawn = [rng.randrange(RANDOM_SEED_LIMIT) for _ in range(self.count)]
                if spec.name not in self.variations and base is not None:
                    drawn[0] = base  # ComfyUI's "control after generate": first run as shown
                seeds[spec.name] = drawn
            elif base is None:  # _seed_spec gives these kinds a base: not reached
                message = f"'{kind}' needs a base seed"
                raise ParameterError(f"{spec.name}: {message}", errors={spec.name: message})
            elif kind == "increment":
                seeds[spec.name] = [base + r for r in range(self.count)]
            elif kind == "decrement":
                seeds[spec.name] = [base - r for r in range(self.count)]
            else:
                seeds[spec.name] = [base] * self.count
        return seeds

    def _seed_column_source(self) -> str | None:
        """The item key that fills the ``seed`` column: ``seed`` or the first seed parameter."""
        names = [s.name for s in self._specs]
        if "seed" in names:
            return "seed"
        for spec in self._specs:
            if _is_seed(spec.name, self._params.get(spec.name)):
                return spec.name
        return None


# --- normalization ----------------------------------------------------------------------------


def _index_parameters(parameters: Sequence[Any]) -> dict[str, Any]:
    """Parameters by friendly name and by canonical key."""
    index: dict[str, Any] = {}
    for p in parameters:
        index.setdefault(p.key, p)
        index.setdefault(p.name, p)
    return index


def _is_seed(name: str, param: Any) -> bool:
    """True for seed parameters (by type, or by name when the workflow's parameters are unknown)."""
    if param is not None:
        return getattr(param, "type", None) == "seed"
    field = name.rsplit(".", 1)[-1]
    return field in ("seed", "noise_seed")


def _normalize(name: str, value: Any, param: Any) -> _Spec:
    """Turn what the user passed for one parameter into a _Spec."""
    if isinstance(value, Sweep | Values):
        return _axis(name, value.values())
    if isinstance(value, SeedStrategy):
        return _seed_spec(name, value, param)
    if _is_seed(name, param):
        strategy = _seed_strategy(name, value)
        if strategy is not None:
            return _seed_spec(name, strategy, param)
    if isinstance(value, list | tuple):
        if not value:
            raise ParameterError(
                f"{name}: the list of values is empty", errors={name: "empty list"}
            )
        return _Cycle(name, list(value))
    if isinstance(value, str) and param is not None:
        parsed = _parse_string(name, value, param)
        if isinstance(parsed, list):
            return _axis(name, parsed)
        return _Fixed(name, parsed)
    return _Fixed(name, value)


def _is_fixed(spec: _Spec) -> bool:
    """True for a value that is the same on every item (a constant or a fixed seed)."""
    return isinstance(spec, _Fixed) or (isinstance(spec, _Seed) and spec.strategy.kind == "fixed")


def _axis(name: str, items: list) -> _Axis:
    """An axis spec; an empty axis is an error."""
    if not items:
        raise ParameterError(f"{name}: the sweep has no values", errors={name: "empty sweep"})
    return _Axis(name, list(items))


def _seed_strategy(name: str, value: Any) -> SeedStrategy | None:
    """A SeedStrategy for ``"random"``/``"increment"``/``"fixed"`` or ``("increment", base)``."""
    if isinstance(value, str) and value in SEED_KINDS:
        return SeedStrategy(value)
    if isinstance(value, str) and value.strip().lower() in SEED_KINDS:
        return SeedStrategy(value.strip().lower())
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] in SEED_KINDS:
        if value[0] == "random":
            raise ParameterError(
                f"{name}: 'random' takes no base", errors={name: "'random' takes no base"}
            )
        return SeedStrategy(value[0], _int_seed(name, value[1]))
    if isinstance(value, str) and not _NUMBER_RE.match(value) and not _RANGE_RE.match(value):
        if "," not in value:
            message = (
                f"seed strategy must be one of {', '.join(SEED_KINDS)} or a number, not {value!r}"
            )
            raise ParameterError(f"{name}: {message}", errors={name: message})
    return None


def _int_seed(name: str, value: Any) -> int:
    """A seed base as an int, or a ParameterError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(
            f"{name}: seed base must be an integer, not {value!r}", errors={name: "not an integer"}
        )
    return value


def _seed_spec(name: str, strategy: SeedStrategy, param: Any) -> _Seed:
    """A seed spec with its base filled in from the workflow when needed."""
    if strategy.kind in ("increment", "fixed", "decrement") and strategy.base is None:
        base = getattr(param, "value", None)
        if isinstance(base, bool) or not isinstance(base, int):
            message = f"'{strategy.kind}' needs a base seed: pass ({strategy.kind!r}, 12345)"
            raise ParameterError(f"{name}: {message}", errors={name: message})
        strategy = SeedStrategy(strategy.kind, base)
    return _Seed(name, strategy)


def _default_seed_specs(specs: list[_Spec], parameters: Sequence[Any]) -> list[_Spec]:
    """Seed parameters the user did not set follow their ``control_after_generate``.

    API-format workflows carry no control value; there they are randomized, since identical
    prompts would just be served from ComfyUI's cache.
    """
    given = {s.name for s in specs}
    controls = {
        "randomize": "random",
        "increment": "increment",
        "decrement": "decrement",
        "fixed": "fixed",
    }
    defaults: list[_Spec] = []
    for p in parameters:
        if p.type != "seed" or p.name in given or p.key in given:
            continue
        if isinstance(p.value, bool) or not isinstance(p.value, int):
            continue
        kind = controls.get(p.control_after_generate or "randomize", "random")
        defaults.append(_Seed(p.name, SeedStrategy(kind, p.value)))
    return defaults


def _plan_seed(value: Any) -> int:
    """A recorded ``plan_seed`` as an int (it reproduces the random seeds of a batch)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value) if isinstance(value, str) else None
        except ValueError:
            value = None
    if value is None:
        message = "must be an integer (the plan_seed a recorded batch shows)"
        raise ParameterError(f"plan_seed {message}", errors={"plan_seed": message})
    return value


def _check_size(specs: list[_Spec], mode: str, count: int, max_items: int) -> None:
    """Refuse a plan of more than ``max_items`` items before building it, saying where it grows."""
    axes = {s.name: len(s.items) for s in specs if isinstance(s, _Axis)}
    cells = math.prod(axes.values()) if mode == "grid" else max(axes.values(), default=1)
    total = cells * count
    if total <= max_items:
        return
    shape = " x ".join(f"{n} ({k} values)" for n, k in axes.items()) or "no axes"
    message = (
        f"the batch would have {total:,} items ({shape}, count {count:,}), more than "
        f"max_items={max_items:,}; pass max_items= to allow it"
    )
    raise ParameterError(message, errors={"count": message})


def _default_count(specs: list[_Spec]) -> int:
    """Without ``count``: the longest cycled list, so each value is used once."""
    return max([len(s.items) for s in specs if isinstance(s, _Cycle)], default=1)


def _cells(specs: list[_Spec], mode: str) -> list[dict[str, Any]]:
    """The cells from the axes: grid = cartesian product (first axis slowest), zip = pairwise."""
    axes = [s for s in specs if isinstance(s, _Axis)]
    if not axes:
        return [{}]
    names = [s.name for s in axes]
    if mode == "zip":
        lengths = {s.name: len(s.items) for s in axes}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise ParameterError(
                f"mode='zip' needs axes of the same length ({detail})",
                errors={n: f"{k} values" for n, k in lengths.items()},
            )
        combos: Iterable[tuple] = zip(*(s.items for s in axes), strict=True)
    else:
        combos = itertools.product(*(s.items for s in axes))
    return [dict(zip(names, combo, strict=True)) for combo in combos]


# --- strings: A1111 ranges and comma lists ------------------------------------------------------


def _parse_string(name: str, text: str, param: Any) -> Any:
    """A string for a number/seed/select/boolean parameter: a list (axis) or one value (fixed).

    Text parameters (prompts) are never split: their commas are part of the prompt.
    """
    kind = getattr(param, "type", None)
    options = getattr(param, "options", None) or []
    if kind not in ("number", "seed", "select", "boolean") or text in options:
        return text
    integer = kind == "seed" or bool(getattr(param, "is_integer", False))
    pieces = [p.strip() for p in text.split(",")]
    if any(not p for p in pieces):
        raise ParameterError(
            f"{name}: empty entry in {text!r}", errors={name: f"empty entry in {text!r}"}
        )
    out: list = []
    for piece in pieces:
        if kind in ("number", "seed"):
            out.extend(parse_range(piece, integer=integer, name=name))
        elif kind == "boolean":
            out.append(_parse_bool(name, piece))
        else:
            out.append(piece)
    is_range = len(pieces) == 1 and _RANGE_RE.match(pieces[0]) is not None
    return out if (len(pieces) > 1 or is_range) else out[0]


def parse_range(text: str, *, integer: bool = False, name: str = "value") -> list:
    """Parse one A1111 range or number: ``"10-30 (+5)"``, ``"1-10 [5]"``, ``"1-5"``, ``"7.5"``.

    ``(+step)`` steps from start to stop inclusive; ``[n]`` gives n evenly spaced values
    (truncated to ints for integer parameters, as A1111 does); a bare ``a-b`` steps by 1.
    """
    if _NUMBER_RE.match(text):
        return [_number(text, integer)]
    match = _RANGE_RE.match(text)
    if not match:
        message = f"cannot read {text!r} as a number or a range like '10-30 (+5)' or '1-10 [5]'"
        raise ParameterError(f"{name}: {message}", errors={name: message})
    start, stop = _number(match["start"], integer), _number(match["stop"], integer)
    if match["num"] is not None:
        return _linspace(start, stop, int(match["num"]), integer, name)
    if match["step"] is not None:
        step = _number(match["step"], integer and "." not in match["step"])
    else:
        step = 1 if stop >= start else -1
    try:
        return _arange(start, stop, step)
    except ParameterError as exc:
        raise ParameterError(f"{name}: {exc}", errors={name: str(exc)}) from None


def _number(text: str, integer: bool) -> int | float:
    """An int when the parameter is an integer or the text has no decimal point, else a float."""
    value = float(text)
    if not math.isfinite(value):
        raise ParameterError(f"{text[:40]}… is too large a number", errors={"value": "too large"})
    if integer or ("." not in text and value.is_integer()):
        return int(value)
    return value


def _parse_bool(name: str, text: str) -> bool:
    """``true``/``false`` (any case) as a bool."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ParameterError(
        f"{name}: expected true or false, not {text!r}", errors={name: "not a boolean"}
    )


def _linspace(start: float, stop: float, num: int, integer: bool, name: str) -> list:
    """``num`` evenly spaced values from start to stop inclusive."""
    if num < 1:
        raise ParameterError(f"{name}: [n] needs n >= 1", errors={name: "[n] needs n >= 1"})
    if num > MAX_AXIS_VALUES:
        message = f"[{num}] is more than {MAX_AXIS_VALUES:,} values"
        raise ParameterError(f"{name}: {message}", errors={name: message})
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    points = [start + i * step for i in range(num - 1)] + [stop]
    return [int(p) for p in points] if integer else [_tidy(p) for p in points]


def _arange(start: float, stop: float, step: float) -> list:
    """Inclusive arithmetic range; float noise (1.7500000000000002) is rounded away."""
    if step == 0:
        raise ParameterError("sweep step must not be 0", errors={"step": "must not be 0"})
    if (stop - start) * step < 0:
        raise ParameterError(
            f"a step of {step} never gets from {start} to {stop}", errors={"step": "wrong sign"}
        )
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise ParameterError(
            f"a sweep needs finite numbers, not {start} to {stop} by {step}",
            errors={"step": "not finite"},
        )
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_AXIS_VALUES:
        raise ParameterError(
            f"{start} to {stop} by {step} is {n:,} values, more than {MAX_AXIS_VALUES:,}",
            errors={"step": "too many values"},
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop, step)):
        return [start + i * step for i in range(n)]
    return [_tidy(start + i * step) for i in range(n)]


def _tidy(value: float) -> float:
    """Round away binary float noise (10 decimals is far below any widget's step)."""
    return round(value, 10)


def _describe_spec(spec: _Spec) -> Any:
    """A JSON-able form of one spec, for the batch record."""
    if isinstance(spec, _Fixed):
        return spec.value
    if isinstance(spec, _Cycle):
        return {"cycle": spec.items}
    if isinstance(spec, _Axis):
        return {"axis": spec.items}
    return {"seed": spec.strategy.kind, "base": spec.strategy.base}


__all__ = [
    "SeedStrategy",
    "Sweep",
    "Values",
    "VariationPlan",
    "increment",
    "new_plan_seed",
    "parse_range",
    "sweep",
    "values",
]
