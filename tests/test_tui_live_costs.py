"""What the app does per batch of training events stays cheap: the footer's keys are recomputed only
when the training state changes (a Footer recompose per batch once took a third of the UI's time), and
the live status line asks for a screen layout only when its height changes; and the app's long-lived
objects are out of the cyclic collector's way (gc.freeze), so a pane switch no longer sets off a
~200 ms full collection."""

from __future__ import annotations

import gc

from textual.widgets import Input, Static
from textual.widgets._footer import FooterKey

from tests.fake_engine import FakeEngine
from tests.pilot_helpers import sync, wait_for
from tests.test_tui import make_app
from tui.widgets.footer import KeysFooter


@sync
async def test_training_events_do_not_recompose_the_footer_or_relayout_the_status():
    app, engine = make_app(FakeEngine(steps_per_poll=2))
    refreshes: list[int] = []
    layouts: list[str] = []
    real_refresh_bindings = app.refresh_bindings
    app.refresh_bindings = lambda: (refreshes.append(1), real_refresh_bindings())[1]  # type: ignore[method-assign]
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        app.pane("model").query_one("#steps", Input).value = "1000000"
        await pilot.press("t")
        train = app.pane("train")
        await wait_for(pilot, lambda: train.last is not None and train.last.step > 10, what="steps")
        status = train.query_one("#train-status", Static)
        real_refresh = status.refresh

        def spy(*regions, layout: bool = False, **kw):
            if layout:
                layouts.append(str(status.render()))
            return real_refresh(*regions, layout=layout, **kw)

        status.refresh = spy  # type: ignore[method-assign]
        before, step0 = len(refreshes), train.last.step
        await wait_for(pilot, lambda: train.last.step > step0 + 200, timeout=30, what="200 more steps")
        batches = (train.last.step - step0) // 2
        assert batches >= 100
        assert len(refreshes) - before <= 2  # the state did not change: the footer was left alone
        assert len(layouts) <= 1, layouts  # the status line kept its height
        assert "step" in str(status.render())  # and still shows the newest step
        await pilot.press("p")
        await wait_for(pilot, lambda: app.training_state == "paused", what="pause")
        assert len(refreshes) - before >= 1  # a state change does refresh the keys
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None, timeout=30, what="the run to stop")


@sync
async def test_the_apps_objects_are_frozen_once_per_pane_and_unfrozen_when_it_exits(monkeypatch):
    freezes: list[int] = []
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), real_freeze())[1])
    app, _ = make_app(FakeEngine(steps_per_poll=2))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, what="the start-up freeze")
        assert len(freezes) == 1
        await pilot.press("3")  # the Train pane's first show: its widgets are frozen after it
        await wait_for(pilot, lambda: len(freezes) == 2, what="the Train pane's freeze")
        for key in "13131":  # panes already shown are not frozen again
            await pilot.press(key)
            await pilot.pause(0.6)
        assert len(freezes) == 2
    assert gc.get_freeze_count() == 0  # the app gave its objects back to the collector


@sync
async def test_a_pane_switch_rebuilds_the_footer_at_most_twice_and_it_shows_the_new_panes_keys():
    app, _ = make_app(FakeEngine(steps_per_poll=2))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        for key in "3412":  # every pane mounted and shown once
            await pilot.press(key)
            await pilot.pause(0.3)
        footer = app.query_one(KeysFooter)
        rebuilds: list[int] = []
        real_recompose = footer.recompose

        async def counting() -> None:
            rebuilds.append(1)
            await real_recompose()

        footer.recompose = counting  # type: ignore[method-assign]
        for key, action in (("3", "pause_resume"), ("4", "next_token"), ("1", None), ("3", "pause_resume")):
            rebuilds.clear()
            await pilot.press(key)
            await pilot.pause(0.5)
            shown = [k.action for k in app.screen.query(FooterKey)]
            assert 1 <= len(rebuilds) <= 2, f"pane {key}: {len(rebuilds)} footer rebuilds"  # Textual's own: 4
            assert "quit" in shown and (action in shown if action else "pause_resume" not in shown and "next_token" not in shown)


@sync
async def test_pane_switches_keep_no_removed_footer_keys_alive():
    app, _ = make_app(FakeEngine(steps_per_poll=2))

    def footer_keys_alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey))

    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        counts = []
        for _ in range(2):
            for key in "1314" * 3:  # each switch rebuilds the footer with other keys
                await pilot.press(key)
                await pilot.pause(0.05)
            await pilot.pause(0.5)
            counts.append(footer_keys_alive())
        # Textual's data binding kept every removed key alive (5-11 a switch); now only the shown ones remain
        assert counts[1] - counts[0] <= 10, counts
