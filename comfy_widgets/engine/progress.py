"""How far one job is, as honestly as the server's events allow: weighted %, step, ETA.

ComfyUI reports per node: ``executing`` (a node starts), ``progress``/``progress_state``
(value/max, sampler steps), ``executed``/``finished``. An average over nodes is misleading
(a loader and a 30 s sampler count the same), so the samplers, the nodes that report steps,
share ``SAMPLER_SHARE`` of the bar in proportion to their steps and every other node shares
the rest equally. The percent never goes back and never reaches 100 before the job ends.

The ETA comes from the step times observed so far (the first step of a sampler includes its
setup, so the rate is measured from step 1 on once two steps were seen) plus, for the nodes
still to run, the mean time of the plain nodes already run. Until a step was timed there is
no ETA (``None``), rather than a made-up "0 s".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SAMPLER_SHARE = 0.9
BEFORE_END_CAP = 99.0
DEFAULT_STEPS = 20


@dataclass
class NodeTiming:
    """What was observed of one node: its step count and when steps arrived."""

    steps: int | None = None  # from the prompt (``steps`` input) or from progress max
    started_at: float | None = None
    finished_at: float | None = None
    first_step_at: float | None = None
    first_step: int | None = None
    last_step_at: float | None = None
    last_step: int = 0

    def step_seconds(self) -> float | None:
        """Observed seconds per step, or None before one could be timed."""
        if self.first_step_at is None or self.last_step_at is None or self.first_step is None:
            return None
        if self.last_step > self.first_step:
            span = self.last_step_at - self.first_step_at
            return span / (self.last_step - self.first_step)
        if self.started_at is not None and self.last_step > 0:
            return (self.last_step_at - self.started_at) / self.last_step
        return None


def prompt_steps(node: Any) -> int | None:
    """The ``steps`` input of a prompt node, if it is a plain positive int (a sampler)."""
    if not isinstance(node, dict):
        return None
    inputs = node.get("inputs")
    steps = inputs.get("steps") if isinstance(inputs, dict) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        return steps
    return None


def expected_steps(node: Any) -> int | None:
    """The steps a node will probably report: its ``steps`` input, else ``DEFAULT_STEPS`` for
    a class named like a sampler (``SamplerCustomAdvanced`` has no ``steps`` input). A guess
    is corrected by the first progress report, and dropped if the node ends without one."""
    steps = prompt_steps(node)
    if steps is None and isinstance(node, dict) and "Sampler" in str(node.get("class_type")):
        return DEFAULT_STEPS
    return steps


@dataclass
class ProgressTracker:
    """Per-node observations of one job and the numbers derived from them.

    Plain Python, fed by ``Job`` from its events with explicit timestamps (so tests can drive
    it with a fake clock): ``started``, ``step``, ``finished`` per node.
    """

    timings: dict[str, NodeTiming] = field(default_factory=dict)
    percent: float = 0.0

    @classmethod
    def for_prompt(cls, prompt: dict[str, Any]) -> ProgressTracker:
        """A tracker knowing each node and the steps a sampler is expected to report."""
        return cls(
            {str(nid): NodeTiming(steps=expected_steps(node)) for nid, node in prompt.items()}
        )

    def _timing(self, node_id: str) -> NodeTiming:
        return self.timings.setdefault(node_id, NodeTiming())

    def started(self, node_id: str, now: float) -> None:
        """A node began running."""
        t = self._timing(node_id)
        if t.started_at is None:
            t.started_at = now

    def step(self, node_id: str, value: float, maximum: float, now: float) -> None:
        """A progress report ``value/maximum`` of a node (a step when maximum > 1)."""
        t = self._timing(node_id)
        if t.started_at is None:
            t.started_at = now
        if maximum <= 1:
            return
        t.steps = int(maximum)
        step = int(value)
        if step <= t.last_step:
            return
        if t.first_step_at is None:
            t.first_step_at, t.first_step = now, step
        t.last_step_at, t.last_step = now, step

    def finished(self, node_id: str, now: float, *, ran: bool = True) -> None:
        """A node ended (``ran=False``: cached, it took no time)."""
        t = self._timing(node_id)
        if t.finished_at is None:
            t.finished_at = now
            if not ran:
                t.started_at = now
            elif t.first_step_at is None:
                t.steps = None  # a ``steps`` input but no step reported (a scheduler node)
        if t.steps:
            t.last_step = t.steps

    # --- derived ------------------------------------------------------------------------------

    def _samplers(self) -> dict[str, NodeTiming]:
        return {nid: t for nid, t in self.timings.items() if t.steps}

    def _fraction(self, t: NodeTiming) -> float:
        if t.finished_at is not None:
            return 1.0
        if t.steps:
            return min(1.0, t.last_step / t.steps)
        return 0.0

    def raw_percent(self) -> float:
        """The weighted fraction done, 0..100, without the monotone/cap rules."""
        if not self.timings:
            return 0.0
        samplers = self._samplers()
        plain = [t for nid, t in self.timings.items() if nid not in samplers]
        total_steps = sum(t.steps or 0 for t in samplers.values())
        if not samplers or not total_steps:
            return 100.0 * sum(self._fraction(t) for t in plain) / len(plain)
        sampler_part = sum(self._fraction(t) * (t.steps or 0) for t in samplers.values())
        sampler_share = SAMPLER_SHARE if plain else 1.0
        done = sampler_share * sampler_part / total_steps
        if plain:
            done += (1.0 - SAMPLER_SHARE) * sum(self._fraction(t) for t in plain) / len(plain)
        return 100.0 * done

    def update(self) -> float:
        """Advance the shown percent: never backwards, at most ``BEFORE_END_CAP`` (the job is
        only 100 % when it has ended, which ``Job`` sets)."""
        self.percent = max(self.percent, min(BEFORE_END_CAP, self.raw_percent()))
        return self.percent

    def running_steps(self, node_id: str | None) -> tuple[int, int] | None:
        """(step, steps) of a node that reports steps, e.g. (12, 20), else None."""
        t = self.timings.get(node_id or "")
        if t is None or not t.steps or t.first_step_at is None or t.finished_at is not None:
            return None
        return t.last_step, t.steps

    def step_seconds(self) -> float | None:
        """Seconds per step, from the sampler timed over the most steps."""
        best: tuple[int, float] | None = None
        for t in self._samplers().values():
            seconds = t.step_seconds()
            if seconds is None or t.first_step is None:
                continue
            seen = t.last_step - t.first_step
            if best is None or seen > best[0]:
                best = (seen, seconds)
        return best[1] if best else None

    def _plain_node_seconds(self) -> float:
        """Mean run time of the plain nodes that ran (cached ones took none), else 0."""
        spans = [
            t.finished_at - t.started_at
            for t in self.timings.values()
            if not t.steps and t.started_at is not None and t.finished_at is not None
        ]
        return sum(spans) / len(spans) if spans else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left, or None while no step was timed yet."""
        per_step = self.step_seconds()
        if per_step is None:
            return None
        remaining = 0.0
        per_node = self._plain_node_seconds()
        for t in self.timings.values():
            if t.finished_at is not None:
                continue
            if t.steps:
                remaining += (t.steps - t.last_step) * per_step
                if t.last_step_at is not None:  # part of the current step already elapsed
                    remaining -= min(per_step, max(0.0, now - t.last_step_at))
            elif t.started_at is not None:
                remaining += max(0.0, per_node - (now - t.started_at))
            else:
                remaining += per_node
        return max(0.0, remaining)
