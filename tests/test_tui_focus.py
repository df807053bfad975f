"""Focus and keys (issue 15): Escape leaves a field, 1-6 and the palette's "Show ..." switch panes,
pane keys act only where they belong, quitting a training session asks, progress tells the truth,
continue asks for more and keeps the chart, and settings survive a restart."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from engine.models.registry import ARCHS
from engine.worker import protocol as P
from tests.fake_engine import FakeEngine
from tests.test_tui import make_app, notifications, sent, start_training, sync, wait_for
from tui.panes.train import progress

SIZE = (100, 32)


async def ready(pilot, app) -> None:
    await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")


def active(app) -> str:
    return app.query_one("#tabs").active


@sync
async def test_escape_leaves_a_model_field_then_t_trains():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.pane("model").params_shown is not None, what="the form")
        field = app.query_one("#steps", Input)
        field.focus()
        auto = field.value  # the fast defaults' step count
        digit = "7" if auto.endswith("9") else "9"
        await pilot.press("end", "backspace", digit, "escape")
        steps = field.value
        assert steps == auto[:-1] + digit  # the keys went into the field
        assert not isinstance(app.focused, Input)
        await pilot.press("t")
        await wait_for(pilot, lambda: sent(engine, P.StartTraining), what="training to start")
        assert field.value == steps  # 't' was not typed into it
        assert active(app) == "tab-train"
        assert sent(engine, P.StartTraining)[0].config["steps"] == int(steps)


@sync
async def test_escape_then_3_switches_and_is_not_typed():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.pane("model").params_shown is not None, what="the form")
        width = app.query_one("#hp-width", Input)
        width.focus()
        await pilot.press("escape", "3")
        assert width.value == "128"
        assert active(app) == "tab-train"


@sync
async def test_palette_show_train_and_start_training_while_a_field_has_focus():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.pane("model").params_shown is not None, what="the form")
        app.query_one("#lr", Input).focus()
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Show Train")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: active(app) == "tab-train", what="the Train tab")
        await pilot.pause(0.3)
        assert active(app) == "tab-train"  # focus given back by the palette did not pull Model forward
        await pilot.press("2")
        app.query_one("#lr", Input).focus()
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Start training")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: sent(engine, P.StartTraining), what="training started from the palette")
        await pilot.pause(0.3)
        assert active(app) == "tab-train"


@sync
async def test_generate_prompt_does_not_swallow_6():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("4")
        await pilot.pause(0.2)
        prompt = app.query_one("#prompt", Input)
        before = prompt.value
        assert app.focused is not prompt
        await pilot.press("6")
        assert prompt.value == before
        assert active(app) == "tab-insight"


@sync
async def test_training_keys_live_on_the_train_pane_and_dim_when_idle():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        train = app.pane("train")
        assert train.check_action("pause_resume", ()) is None  # dimmed: nothing is training
        assert app.check_action("train", ()) is True
        await pilot.press("1", "p")  # on the Data pane p is not a training key
        await pilot.pause(0.2)
        assert not any("nothing is training" in m for m in notifications(app))
        assert not sent(engine, P.Pause)
        await start_training(pilot, app)
        assert train.check_action("pause_resume", ()) is True
        assert app.check_action("train", ()) is False  # hidden: no second run while one trains
        await pilot.press("p")
        await wait_for(pilot, lambda: sent(engine, P.Pause), what="pause from the Train pane")


@sync
async def test_quit_while_training_asks_first():
    app, engine = make_app(FakeEngine(steps_per_poll=1))
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        await pilot.press("q")
        await pilot.pause(0.2)
        from tui.dialogs import Confirm

        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.is_running and app.train_job is not None
        await pilot.press("q")
        await pilot.pause(0.2)
        await pilot.press("y")
        await pilot.pause(0.3)
    assert app.return_code == 0


def test_progress_uses_whichever_limit_ends_first():
    # 90 s budget, 2000 steps, at 70 s step 905: time ends it first (78%, 20 s left)
    fraction, eta = progress(905, 70.0, 0, 2000, 90.0)
    assert fraction == pytest.approx(70 / 90) and eta == pytest.approx(20.0)
    # steps end it first: 1500/2000 after 30 s of a 600 s budget -> 75%, 10 s left
    fraction, eta = progress(1500, 30.0, 0, 2000, 600.0)
    assert fraction == pytest.approx(0.75) and eta == pytest.approx(10.0)
    assert progress(10, 5.0, 0, None, None) == (None, None)
    assert progress(10, 5.0, 0, None, 20.0) == (pytest.approx(0.25), pytest.approx(15.0))


@sync
async def test_finish_clears_progress_and_c_continues_the_same_chart():
    app, engine = make_app(FakeEngine(steps_per_poll=20))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.pane("model").query_one("#steps", Input).value = "60"
        await pilot.press("t")
        await wait_for(pilot, lambda: app.train_job is None and app.last_run_dir, what="the run to finish")
        train = app.pane("train")
        assert not train.query_one("#train-progress-row").display
        assert str(train.query_one("#train-eta").render()) == ""
        points = len(train.curve.series["train"])
        last_step, elapsed = train.last.step, train.last.elapsed
        assert train.check_action("continue_run", ()) is True
        await pilot.press("c")
        await pilot.pause(0.2)
        await pilot.press("tab", *"30", "enter")  # 30 more seconds instead of steps
        await wait_for(pilot, lambda: len(sent(engine, P.StartTraining)) == 2, what="the continued job")
        resumed = sent(engine, P.StartTraining)[1]
        assert resumed.resume_from == app.last_run_dir
        assert resumed.config["steps"] == 0 and resumed.config["time_budget"] == pytest.approx(elapsed + 30)
        assert len(train.curve.series["train"]) >= points  # the chart goes on
        assert train.last.step >= last_step


@sync
async def test_settings_are_remembered_across_sessions():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.query_one("#tokenizer").value = "word"
        await pilot.press("2")
        model = app.pane("model")
        await wait_for(pilot, lambda: model.params_shown is not None, what="the form")
        app.query_one("#archs").index = list(ARCHS).index("lstm")
        await wait_for(pilot, lambda: model.arch == "lstm" and model.is_mounted, what="lstm")
        await wait_for(pilot, lambda: bool(app.query("#hp-forget_bias")) and model.params_shown is not None,
                       what="the lstm form")
        app.query_one("#hp-width", Input).value = "200"
        app.query_one("#batch", Input).value = "16"
        await pilot.pause(0.2)
        await app.action_quit()
    app2, _ = make_app()
    async with app2.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app2.pane("data").stats is not None, what="the corpus")
        assert app2.pane("data").tokenizer == "word"
        await pilot.press("2")
        model = app2.pane("model")
        await wait_for(pilot, lambda: bool(app2.query("#hp-forget_bias")), what="the lstm form")
        assert model.arch == "lstm"
        assert app2.query_one("#hp-width", Input).value == "200"
        assert app2.query_one("#batch", Input).value == "16"
