"""Progress that tells the truth: weighted by steps, monotone, never 100 % early, a step count
and an ETA from observed step times (engine/progress.py and Job on the simulator)."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfy_widgets.engine.progress import BEFORE_END_CAP, ProgressTracker
from comfy_widgets.states import TERMINAL_JOB_STATES as TERMINAL
from tests.shared_data import WORKFLOWS

PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {}},
    "3": {"class_type": "KSampler", "inputs": {"steps": 20}},
    "8": {"class_type": "VAEDecode", "inputs": {}},
    "9": {"class_type": "SaveImage", "inputs": {}},
}


def test_sampler_steps_dominate_and_the_bar_stops_below_100():
    t = ProgressTracker.for_prompt(PROMPT)
    t.finished("4", 0.0, ran=False)
    t.started("6", 0.0)
    t.finished("6", 0.1)
    t.started("3", 0.1)
    assert t.update() < 10, "the plain nodes before sampling are worth little"
    seen = []
    for step in range(1, 21):
        t.step("3", step, 20, 0.1 + step)
        seen.append(t.update())
        assert abs(seen[-1] - 100 * step / 20) <= 10
    assert seen == sorted(seen)
    t.finished("3", 21)
    t.finished("8", 22)
    t.finished("9", 23)
    assert t.update() == BEFORE_END_CAP, "100 % only when the job itself ends"


def test_step_count_and_eta_from_observed_steps():
    t = ProgressTracker.for_prompt(PROMPT)
    t.started("3", 0.0)
    assert t.eta(0.0) is None, "no ETA before a step was timed"
    t.step("3", 1, 20, 3.0)  # setup + first step
    t.step("3", 2, 20, 3.5)
    t.step("3", 5, 20, 5.0)
    assert t.running_steps("3") == (5, 20)
    assert t.step_seconds() == pytest.approx(0.5)
    assert t.eta(5.0) == pytest.approx(15 * 0.5)
    t.step("3", 4, 20, 5.5)  # a repeated or late report never moves backwards
    assert t.running_steps("3") == (5, 20)


def test_progress_state_only_server_and_no_sampler_prompt():
    t = ProgressTracker.for_prompt({"1": {"inputs": {}}, "2": {"inputs": {}}})
    t.finished("1", 1.0)
    assert t.update() == 50.0
    t.step("2", 7, 10, 2.0)  # a node that turns out to report steps becomes a sampler
    assert t.running_steps("2") == (7, 10)
    assert t.update() >= 50.0


def test_a_scheduler_with_a_steps_input_is_not_taken_for_the_sampler():
    """Flux-style graphs: BasicScheduler has ``steps`` but reports none; the sampler reports
    them without a ``steps`` input. The bar must not jump when the scheduler finishes."""
    t = ProgressTracker.for_prompt(
        {
            "17": {"class_type": "BasicScheduler", "inputs": {"steps": 20}},
            "13": {"class_type": "SamplerCustomAdvanced", "inputs": {}},
            "8": {"class_type": "VAEDecode", "inputs": {}},
        }
    )
    t.started("17", 0.0)
    t.finished("17", 0.1)
    assert t.update() < 50
    t.started("13", 0.1)
    for step in range(1, 21):
        t.step("13", step, 20, 0.1 + step)
        assert abs(t.update() - 100 * step / 20) <= 10, (step, t.update())


async def test_a_20_step_run_on_the_simulator_is_followed_truthfully():
    from comfy_widgets import sim
    from comfy_widgets.engine.client import connect
    from comfy_widgets.states import JobState
    from comfy_widgets.workflow.workflow import Workflow

    per_step = 0.15
    server = await sim.start(seconds_per_step=per_step, previews=False)
    client = connect(server.url)
    samples: list[tuple[float, float, tuple[int, int] | None, float | None, str]] = []
    try:
        wf = Workflow.load(str(WORKFLOWS / "ui/sd15_txt2img_default.json"))
        job = client.run(wf, steps=20)
        deadline = time.monotonic() + 30
        while not job.done():
            assert time.monotonic() < deadline, "the run did not end in 30 s"
            samples.append(
                (time.monotonic(), job.progress, job.current_steps, job.eta_s, job.state)
            )
            await asyncio.sleep(0.02)
        await job
        end = time.monotonic()
    finally:
        await client.aclose()
        await server.astop()
    percents = [p for _, p, _, _, _ in samples]
    assert percents == sorted(percents), "the percent never goes back"
    # the job has ended once its state is final (its record may still be being committed)
    before_end = [p for _, p, _, _, state in samples if state not in TERMINAL]
    assert max(before_end) < 100, "never 100 % before the job ended"
    assert job.progress == 100.0 and job.state == JobState.COMPLETED
    sampling = [s for s in samples if s[2] is not None]
    assert {s[2][1] for s in sampling} == {20}
    assert len({s[2][0] for s in sampling}) >= 15, "the step counter moves"
    for _, pct, (step, steps), _, _ in sampling:
        assert abs(pct - 100 * step / steps) <= 10, (pct, step)
    # from step 5 while a quarter of the run is still ahead (at the very end any estimate is
    # off by the unforeseeable last few tenths of a second: decoding, saving, fetching)
    checked = 0
    for at, _, (step, _steps), eta, _ in sampling:
        if 5 <= step <= 15:
            assert eta is not None
            real = end - at
            assert abs(eta - real) <= 0.5 * real, (step, eta, real)
            checked += 1
    assert checked >= 8
