"""Pilot tests of the Train pane's time machine on the FakeEngine: enter on the loss chart samples the
snapshot at or before the cursor step (same prompt and seed) through Generate, while the run trains."""

from __future__ import annotations

from textual.widgets import Input

from engine.runs.snapshot_index import schedule, scheduled
from engine.worker import protocol as P
from tests.fake_engine import FakeEngine, fake_timeline_text
from tests.pilot_helpers import sync, wait_for
from tests.test_tui import notifications, sent, start_training
from tui.app import SeqplayApp
from tui.panes.train import SNAPSHOT_SEED, SNAPSHOT_TOKENS

SIZE = (120, 40)


async def sample_at(pilot, app, train, engine, *keys: str) -> P.Generate:
    """Move the cursor with ``keys``, press enter, wait for the sample; the Generate it sent."""
    before = len(sent(engine, P.Generate))
    await pilot.press(*keys, "enter")
    await wait_for(pilot, lambda: len(sent(engine, P.Generate)) == before + 1, what="a Generate")
    await wait_for(pilot, lambda: train.snap_gen is None, what="the sample to finish")
    return sent(engine, P.Generate)[-1]


@sync
async def test_enter_on_the_curve_samples_the_snapshot_before_the_cursor_while_training():
    engine = FakeEngine(steps_per_poll=1, snapshot_base=4)
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        train = app.pane("train")
        await wait_for(pilot, lambda: train.last is not None and train.last.step >= 40, what="40 steps")
        train.curve.focus()
        run = train.started.run_dir

        gen = await sample_at(pilot, app, train, engine, "end")  # while it runs: the newest snapshot so far
        at = int(gen.source.rpartition("@")[2])
        assert gen.source.startswith(f"{run}@") and scheduled(at, 4) and 32 <= at <= train.curve.cursor_x()
        assert train.snap_text == fake_timeline_text(at, SNAPSHOT_TOKENS) and app.training_state == "running"

        await pilot.press("p")  # paused (still the live run): the curve stops growing, cursor steps are exact
        await wait_for(pilot, lambda: app.training_state == "paused", what="pause")
        await pilot.pause(0.2)
        train.curve.cursor = None

        gen = await sample_at(pilot, app, train, engine, "home")  # the first point: the step-0 snapshot
        assert train.curve.cursor_x() < 4
        assert gen.source == f"{run}@0" and gen.prompt == "" and gen.settings["seed"] == SNAPSHOT_SEED
        assert train.snap_step == 0 and train.snap_text == fake_timeline_text(0, SNAPSHOT_TOKENS)
        panel = str(train.query_one("#snap-sample").render())
        assert panel.startswith(f"snapshot step 0 · seed {SNAPSHOT_SEED}: ") and train.snap_text[:20] in panel

        gen = await sample_at(pilot, app, train, engine, *["right"] * 9)  # step 10 or more (old points are bucketed)
        x = train.curve.cursor_x()
        want = max(s for s in [0, *schedule(4, int(x))] if s <= x)  # the newest snapshot at or before the cursor
        assert want >= 8 and gen.source == f"{run}@{want}" and train.snap_text == fake_timeline_text(want, SNAPSHOT_TOKENS)
        again = await sample_at(pilot, app, train, engine)  # same cursor: same snapshot, prompt and seed
        assert (again.source, again.prompt, again.settings) == (gen.source, gen.prompt, gen.settings)
        assert again.gen_id != gen.gen_id and train.snap_text == fake_timeline_text(want, SNAPSHOT_TOKENS)

        assert app.training_state == "paused" and app.gen_id is None  # training and the Generate pane untouched

        app.gen_id = "the-generate-pane's"  # the Generate pane is generating: its generation is not cancelled
        before = len(sent(engine, P.Generate))
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Generate pane is generating" in m for m in notifications(app)),
                       what="the refusal")
        assert len(sent(engine, P.Generate)) == before


@sync
async def test_a_run_without_snapshots_says_so():
    engine = FakeEngine(steps_per_poll=2)  # snapshot_base 0: the fake writes none
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        train = app.pane("train")
        train.curve.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("keeps no snapshots" in m for m in notifications(app)), what="the notice")
        assert not sent(engine, P.Generate)


@sync
async def test_the_log_at_80x24_is_on_screen_and_follows_its_newest_line():
    engine = FakeEngine(steps_per_poll=5, eval_every=10)  # an evaluation line every 10 steps
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
        app.pane("model").query_one("#steps", Input).value = "1000000"  # still training when the test ends
        await start_training(pilot, app)
        train = app.pane("train")
        log = train.query_one("#train-log")
        await wait_for(pilot, lambda: len(log.lines) > 8, what="more log lines than fit")
        for _ in range(3):  # as lines keep arriving (the log keeps its newest lines), the view stays at the newest
            seen = log.lines[-1].text
            await wait_for(pilot, lambda s=seen: log.lines[-1].text != s, what="a new line")
            await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y > 0, what="the view at the newest line")
        assert log.region.bottom <= app.screen.region.bottom - 1  # above the footer, never cut off
        assert log.region.height >= 4 and train.curve.region.height >= 9
