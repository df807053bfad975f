"""Curves like TensorBoard: spikes survive downsampling, whole-number step ticks, EMA strength, x as
step/tokens/time, LR and gradient-norm panels, event markers, a cursor readout, the legend outside."""

from __future__ import annotations

from textual.widgets import Input

from engine.worker import protocol as P
from tests.fake_engine import FakeEngine
from tests.pilot_helpers import dialog_closed
from tests.test_tui import make_app, sent, sync, wait_for
from tui.series import BoundedSeries, ema, integer_ticks


def test_a_spike_survives_any_amount_of_downsampling():
    s = BoundedSeries(capacity=40)
    for step in range(100_000):
        s.append(step, 50.0 if step == 1234 else 1.0 + (step % 7) * 0.01)
    assert len(s) <= 40
    assert max(s.ys) == 50.0  # pair-averaging would have flattened it to ~1
    assert min(s.ys) == 1.0
    assert s.xs == sorted(s.xs)


def test_step_ticks_are_whole_numbers():
    for lo, hi in ((0, 2000), (125.4, 385.1), (3, 7.5), (0, 0), (10, 11)):
        ticks = integer_ticks(lo, hi)
        assert ticks and all(isinstance(t, int) for t in ticks)
        assert all(lo - 1 <= t <= hi for t in ticks)
    assert integer_ticks(0, 2000) == [0, 500, 1000, 1500, 2000]


def test_ema_is_bias_corrected():
    assert ema([2.0, 2.0, 2.0], 0.9) == [2.0, 2.0, 2.0]
    assert ema([1.0, 3.0], 0.0) == [1.0, 3.0]


@sync
async def test_train_charts_markers_cursor_axes_and_panels():
    app, engine = make_app(FakeEngine(steps_per_poll=5))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        app.pane("model").query_one("#steps", Input).value = "1000000"  # the fake steps fast: never done before x
        await pilot.press("t")
        await wait_for(pilot, lambda: app.pane("train").last is not None and app.pane("train").last.step > 20,
                       what="steps")
        train = app.pane("train")
        await pilot.press("l")
        await pilot.pause(0.2)
        await pilot.press(*"0.0005", "enter")
        await wait_for(pilot, lambda: sent(engine, P.SetLearningRate), what="set lr")
        await dialog_closed(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.training_state == "paused", what="pause")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.training_state == "running", what="resume")
        await pilot.press("ctrl+s")  # a checkpoint now
        await wait_for(pilot, lambda: any(k == "checkpoint" for _x, k in train.curve.events), what="checkpoint marker")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None, timeout=30, what="the run to finish")
        curve = train.curve
        kinds = {kind for _x, kind in curve.events}
        assert {"lr change", "pause", "checkpoint"} <= kinds
        assert train.query_one("#aux-row").display  # tall enough: LR and gradient-norm panels shown
        assert len(train.query_one("#lr-curve").series["lr"]) > 0
        assert len(train.query_one("#grad-curve").series["grad norm"]) > 0
        assert "train" in curve.legend() and "lr change" in curve.legend()
        assert "train" in str(curve.border_subtitle) and "checkpoint" in str(curve.border_subtitle)  # legend: in the border
        train.focus_default()
        await pilot.press("left", "left")
        assert curve.border_title.startswith("step ")
        assert "train" in curve.border_title and "tokens" in curve.border_title
        await pilot.press("a")
        assert curve.xlabel == "tokens seen" and curve.x_map is not None
        assert curve.x_map(curve.series["train"].xs[-1]) == train.last.tokens_seen
        await pilot.press("a")
        assert curve.xlabel == "wall time"
        await pilot.press("a")
        assert curve.xlabel == "step" and curve.x_map is None
        levels = []
        for _ in range(4):
            await pilot.press("m")
            levels.append(curve.smooth)
        assert levels == [0.6, 0.9, 0.97, 0.0]
        await pilot.press("n")
        assert not train.query_one("#aux-row").display


@sync
async def test_a_rollback_is_marked_where_the_step_goes_back():
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        train = app.pane("train")
        await wait_for(pilot, lambda: train.is_mounted and bool(train.children), what="the Train pane")
        train.reset({"steps": 100})
        points = [P.StepPoint(s, 2.0, 1e-3, 1.0, 100.0, s * 0.1, s * 64) for s in (1, 2, 3, 4)]
        back = [P.StepPoint(s, 2.0, 5e-4, 1.0, 100.0, 1.0 + s * 0.1, 300 + s * 64) for s in (3, 4)]
        train.apply([P.StepMetrics(job="j", points=tuple(points))])
        train.apply([P.StepMetrics(job="j", points=tuple(back))])
        await pilot.pause()
        assert ("rollback" in {k for _x, k in train.curve.events})
