"""End to end once on the real worker process (slow: spawns torch): train a tiny model from the TUI,
watch the curve, generate normally and in step mode."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input

from tui.app import SeqplayApp

pytestmark = pytest.mark.slow


async def _wait(pilot, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.1)


async def _scenario() -> None:
    app = SeqplayApp(device="cpu")
    async with app.run_test(size=(120, 40)) as pilot:
        await _wait(pilot, lambda: app.pane("data").stats is not None, 30)
        model = app.pane("model")
        for widget, value in {"hp-width": "32", "hp-layers": "1", "hp-heads": "2", "hp-context": "32",
                              "steps": "60", "batch": "8"}.items():
            model.query_one(f"#{widget}", Input).value = value
        await pilot.pause()
        await pilot.press("t")
        await _wait(pilot, lambda: app.train_job is not None, 120)
        await _wait(pilot, lambda: app.train_job is None, 240)
        train = app.pane("train")
        assert train.last is not None and train.last.step == 60
        assert train.curve.series["train"].count == 60
        assert train.last_eval is not None and train.last_eval.val_loss < train.curve.series["train"].ys[0]
        assert app.model_run
        await pilot.press("4")
        gen = app.pane("generate")
        gen.query_one("#s-max_tokens", Input).value = "30"
        gen.query_one("#prompt", Input).focus()
        await pilot.press(*"The ", "enter")
        await _wait(pilot, lambda: gen.done_reason == "max_tokens", 120)
        assert len(gen.output.tokens) == 30
        assert all(0.0 < t.prob <= 1.0 and t.top for t in gen.output.tokens)
        await pilot.press("ctrl+t")
        gen.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await _wait(pilot, lambda: len(gen.output.tokens) == 1, 60)
        gen.output.focus()
        await pilot.press("n")
        await _wait(pilot, lambda: len(gen.output.tokens) == 2, 60)
        alt = gen.output.current().top[-1]
        gen.branch(len(gen.output.current().top) - 1)
        await _wait(pilot, lambda: len(gen.output.tokens) == 2 and gen.output.tokens[-1].token == alt.token, 60)
        assert not any(n.severity == "error" for n in app._notifications)
    app.shutdown_engine()
    assert app._pump_done.is_set()  # the worker was shut down and the engine thread ended


def test_real_worker_end_to_end():
    asyncio.run(_scenario())
