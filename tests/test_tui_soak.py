"""Soak (issue 8): a fast fake engine floods the app with thousands of training and generation events;
the plot, log and token buffers stay bounded and memory stays flat."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

import pytest
from textual.widgets import Input

from tests.fake_engine import FakeEngine
from tui.app import SeqplayApp
from tui.panes.train import LOG_LINES

pytestmark = pytest.mark.slow


async def _until(pilot, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.05)


async def _soak() -> dict[str, float]:
    engine = FakeEngine(steps_per_poll=100, tokens_per_poll=50, eval_every=25, poll_sleep=0.001)
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.pane("data").stats is not None, 30)
        app.pane("model").query_one("#steps", Input).value = ""  # no step limit
        await pilot.press("t")
        train = app.pane("train")
        curve = train.curve
        await _until(pilot, lambda: curve.series.get("train") and curve.series["train"].count > 20_000, 60)
        tracemalloc.start()
        marks = []
        for target in (80_000, 120_000, 160_000):  # equal spans after caches fill: a leak grows in each
            await _until(pilot, lambda t=target: curve.series["train"].count > t, 120)
            gc.collect()
            marks.append(tracemalloc.get_traced_memory()[0])
        for name, series in curve.series.items():
            assert len(series) <= curve.capacity, name
        log = train.query_one("#train-log")
        assert len(log.lines) <= LOG_LINES
        await pilot.press("x")
        await _until(pilot, lambda: app.train_job is None, 30)

        gen = app.pane("generate")
        gen.query_one("#s-max_tokens", Input).value = "500"
        for round_ in range(30):  # many generations in a row: only the last one's tokens are kept
            gen.start_generation(prompt="the ")
            await _until(pilot, lambda: gen.done_reason == "max_tokens", 30)
            assert len(gen.output.tokens) == 500
            if round_ in (9, 19, 29):
                gc.collect()
                marks.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        return {"events": app.events_seen, "steps": curve.series["train"].count,
                "growth_training": marks[2] - marks[1], "growth_generation": marks[5] - marks[4], "marks": marks}


def test_buffers_stay_bounded_under_a_flood():
    stats = asyncio.run(_soak())
    assert stats["events"] > 10_000 and stats["steps"] > 160_000
    marks = stats["marks"]
    # Flat memory. While training, up to 3 unhandled batches are in flight (transient, ~1 MB here); a
    # leak of even 50 bytes per step would add 2 MB per 40,000-step span.
    assert max(marks[1] - marks[0], marks[2] - marks[1]) < 2_000_000, stats
    # Quiescent (training stopped, 10 generations later) the app holds about what it held mid-run.
    assert marks[3] - marks[0] < 1_500_000, stats
    # 10 more generations of 500 tokens each add nothing that stays.
    assert marks[5] - marks[4] < 500_000, stats
