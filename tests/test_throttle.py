"""Throttle: coalescing, the rate bound under a flood, and the trailing flush."""

from __future__ import annotations

import asyncio
import threading

import pytest

from comfy_widgets.widgets.throttle import Throttle


class FakeTime:
    """A hand-moved clock, and a scheduler that fires when the clock passes a deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[list] = []

    def clock(self) -> float:
        return self.now

    def call_later(self, delay, fn):
        entry = [self.now + delay, fn, False]
        self.timers.append(entry)

        class Handle:
            def cancel(self_inner):
                entry[2] = True

        return Handle()

    def advance(self, dt: float) -> None:
        self.now += dt
        due = [t for t in self.timers if t[0] <= self.now + 1e-12 and not t[2]]
        self.timers = [t for t in self.timers if t not in due]
        for t in due:
            t[1]()


def make(rate=20.0):
    ft = FakeTime()
    sent: list[dict] = []
    th = Throttle(sent.append, rate, clock=ft.clock, call_later=ft.call_later)
    return ft, sent, th


def test_first_push_is_sent_at_once():
    _, sent, th = make()
    th.push({"a": 1})
    assert sent == [{"a": 1}]


def test_pushes_within_the_interval_coalesce_into_one_trailing_send():
    ft, sent, th = make(rate=10)
    th.push({"a": 1})
    th.push({"a": 2, "b": 1})
    th.push({"a": 3})
    assert sent == [{"a": 1}]
    assert th.pending
    ft.advance(0.1)
    assert sent == [{"a": 1}, {"a": 3, "b": 1}]
    assert not th.pending


def test_flood_of_1000_events_over_one_second_stays_within_rate():
    ft, sent, th = make(rate=20)
    for i in range(1000):
        th.push({"progress": i})
        ft.advance(0.001)
    ft.advance(1.0)
    # 1 s of pushes at 20/s: at most one send per 50 ms window plus the trailing one.
    assert len(sent) <= 1.0 * 20 + 2
    assert len(sent) >= 10
    assert sent[-1] == {"progress": 999}
    assert th.sends == len(sent)


def test_sends_are_never_closer_than_the_interval():
    ft, sent, th = make(rate=5)
    times: list[float] = []
    th._send = lambda batch: times.append(ft.now)
    for _ in range(500):
        th.push({"x": 1})
        ft.advance(0.003)
    ft.advance(1)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and min(gaps) >= 0.2 - 1e-9


def test_close_drops_pending_and_cancels_timer():
    ft, sent, th = make()
    th.push({"a": 1})
    th.push({"a": 2})
    th.close()
    ft.advance(1)
    th.push({"a": 3})
    assert sent == [{"a": 1}]


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="rate"):
        Throttle(lambda b: None, 0)


async def test_trailing_flush_runs_on_the_running_loop():
    sent: list[dict] = []
    done = asyncio.Event()

    def send(batch):
        sent.append(batch)
        if batch.get("last"):
            done.set()

    th = Throttle(send, rate=50)
    th.push({"v": 0})
    for i in range(1, 100):
        th.push({"v": i})
    th.push({"last": True})
    await asyncio.wait_for(done.wait(), 5)
    assert sent[-1] == {"v": 99, "last": True}
    assert len(sent) == 2


def test_trailing_flush_without_a_loop_uses_a_timer_thread():
    sent: list[dict] = []
    done = threading.Event()

    def send(batch):
        sent.append(batch)
        if batch.get("v") == 9:
            done.set()

    th = Throttle(send, rate=50)
    for i in range(10):
        th.push({"v": i})
    assert done.wait(5)
    assert sent == [{"v": 0}, {"v": 9}]
