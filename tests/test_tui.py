"""Pilot tests: the real app end to end, driven by keys, on the scripted FakeEngine (no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.worker import protocol as P
from tests.fake_engine import FakeEngine
from tests.pilot_helpers import dialog_closed, sync, wait_for
from tui.app import PANES, SeqplayApp

SIZE = (120, 40)






def make_app(engine: FakeEngine | None = None, **kwargs) -> tuple[SeqplayApp, FakeEngine]:
    engine = engine or FakeEngine(steps_per_poll=3)
    return SeqplayApp(engine_factory=lambda: engine, **kwargs), engine


def notifications(app: SeqplayApp) -> list[str]:
    return [n.message for n in app._notifications]


def sent(engine: FakeEngine, kind: type) -> list:
    return [c for c in engine.sent if isinstance(c, kind)]


async def start_training(pilot, app: SeqplayApp) -> None:
    data = app.query_one("#data")
    await wait_for(pilot, lambda: data.stats is not None, what="the corpus to load")
    await pilot.press("t")
    await wait_for(pilot, lambda: app.query_one("#train").curve.points_received > 0, what="curve points")


@sync
async def test_opens_on_default_corpus_with_statistics():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        data = app.query_one("#data")
        await wait_for(pilot, lambda: data.stats is not None, what="stats")
        assert data.spec == "grammar"
        assert data.stats.chars > 1000 and data.stats.distinct_chars > 10
        await wait_for(pilot, lambda: "grammar" in app.sub_title, what="subtitle")
        await wait_for(pilot, lambda: data.counts is not None, what="token counts")
        assert data.counts.tokens == data.stats.chars  # char tokenizer: one token per character
        assert data.counts.vocab_size == data.stats.distinct_chars + 1  # + <unk>


@sync
async def test_opens_a_file_and_survives_a_bad_one(tmp_path: Path):
    good = tmp_path / "poem.txt"
    good.write_text("to be or not to be\nthat is the question\n")
    app, _ = make_app(source=str(good))
    async with app.run_test(size=SIZE) as pilot:
        data = app.query_one("#data")
        await wait_for(pilot, lambda: data.stats is not None)
        assert data.spec == str(good)
        assert data.stats.lines == 2
        assert data.stats.distinct_chars == len(set(good.read_text()))
    app, _ = make_app(source=str(tmp_path / "missing.txt"))
    async with app.run_test(size=SIZE) as pilot:
        data = app.query_one("#data")
        await wait_for(pilot, lambda: data.stats is not None, what="fallback corpus")
        assert data.spec == "grammar"  # fell back to the default corpus
        assert any("missing.txt" in m for m in notifications(app))


@sync
async def test_pick_corpus_and_arch_then_train_pause_step_lr_stop():
    app, engine = make_app(FakeEngine(steps_per_poll=2))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        await pilot.press("down", "up", "enter")  # the corpora list: back to grammar, open it
        data = app.query_one("#data")
        await wait_for(pilot, lambda: data.stats is not None)
        await pilot.press("2")
        model = app.query_one("#model")
        names = [item.name for item in app.query_one("#archs").children]
        for _ in range(names.index("lstm") - names.index("transformer")):
            await pilot.press("up" if names.index("lstm") < names.index("transformer") else "down")
        target = names.index("lstm")
        while model.arch != "lstm":
            await pilot.press("up" if target < names.index(model.arch) else "down")
        assert "c_t = f*c_{t-1}" in str(app.query_one("#arch-equation").render())
        await start_training(pilot, app)
        start = sent(engine, P.StartTraining)[0]
        assert start.config["arch"] == "lstm" and start.config["source"] == "grammar"
        assert app.train_job == "train-1" and app.training_state == "running"

        await pilot.press("p")
        await wait_for(pilot, lambda: app.training_state == "paused", what="pause")
        train = app.query_one("#train")
        await pilot.pause(0.3)
        before = train.last.step
        await pilot.press("s")
        await wait_for(pilot, lambda: train.last.step == before + 1, what="one single step")
        await pilot.pause(0.3)
        assert train.last.step == before + 1  # exactly one step while paused

        await pilot.press("l")
        await pilot.pause()
        await pilot.press(*"0.0005", "enter")  # the dialog selects the old value: typing replaces it
        await wait_for(pilot, lambda: sent(engine, P.SetLearningRate), what="set lr")
        assert sent(engine, P.SetLearningRate)[0].lr == pytest.approx(5e-4)

        await dialog_closed(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.training_state == "running")
        await wait_for(pilot, lambda: train.current_lr == pytest.approx(5e-4), what="new lr in metrics")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None, what="finished")
        assert sent(engine, P.Stop)
        assert app.model_run and (Path(app.model_run) / "run.json").is_file()
        assert "finished (stopped)" in train.state


@sync
async def test_invalid_model_settings_refuse_to_train():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one("#data").stats is not None)
        await pilot.press("2")
        app.query_one("#hp-heads").value = "3"  # 3 heads do not divide width 128
        await pilot.pause()
        assert "heads do not divide" in str(app.query_one("#param-count").render())
        await pilot.press("t")
        await pilot.pause(0.2)
        assert not sent(engine, P.StartTraining)
        assert any("heads do not divide" in m for m in notifications(app))


@sync
async def test_live_parameter_count_follows_the_form():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one("#data").stats is not None)
        await pilot.press("2")
        label = app.query_one("#param-count")
        await wait_for(pilot, lambda: "parameters" in str(label.render()))
        first = str(label.render())
        app.query_one("#hp-width").value = "256"
        await pilot.pause()
        assert str(label.render()) != first


@sync
async def test_generate_normal_step_mode_branch_and_cancel():
    app, engine = make_app(FakeEngine(steps_per_poll=2, tokens_per_poll=2))
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        gen = app.query_one("#generate")
        await pilot.press("4")
        app.query_one("#s-max_tokens").value = "12"
        app.query_one("#prompt").focus()
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: gen.done_reason == "max_tokens", what="generation done")
        cmd = sent(engine, P.Generate)[-1]
        assert cmd.prompt == "hi" and cmd.source is None and cmd.settings["max_tokens"] == 12
        assert gen.output.text == "the cat sat "
        # the alternatives of the token under the cursor
        table = app.query_one("#alternatives")
        assert table.row_count == 5

        # step mode: one token per n
        await pilot.press("ctrl+t")
        assert gen.step_mode
        app.query_one("#prompt").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(gen.output.tokens) == 1, what="first step")
        gen.output.focus()
        await pilot.press("n")
        await wait_for(pilot, lambda: len(gen.output.tokens) == 2, what="second step")
        await pilot.pause(0.2)
        assert len(gen.output.tokens) == 2
        # branch: pick the second alternative of the last token
        await pilot.press("left", "right")
        alt = gen.output.current().top[1]
        table.focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: len(gen.output.tokens) == 2 and gen.output.tokens[-1].token == alt.token,
                       what="branched token")
        branch = sent(engine, P.Generate)[-1]
        assert branch.prompt == "hi" + "t" and branch.step_mode
        assert sent(engine, P.GenerateStep)[-1].choose == alt.token

        # cancel a streaming generation with escape
        await pilot.press("ctrl+t")
        app.query_one("#s-max_tokens").value = "100000"
        app.query_one("#prompt").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(gen.output.tokens) > 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: gen.done_reason == "cancelled", what="cancel")
        assert sent(engine, P.CancelGeneration)


@sync
async def test_generate_without_a_model_says_what_to_do():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "g")  # the Generate pane opens on its output, not in the prompt
        await pilot.pause(0.1)
        assert not sent(engine, P.Generate)
        assert any("train one" in m for m in notifications(app))


def _write_run(root: Path, name: str, arch: str, offset: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"arch": arch, "source": "grammar", "params": 1000, "steps": 300,
                                                 "best_val_bpc": 2.0 + offset, "status": "done", "created": 1_700_000_000.0 + offset}))
    (folder / "config.json").write_text(json.dumps({"arch": arch, "source": "grammar"}))
    with open(folder / "metrics.jsonl", "w") as f:
        for step in (100, 200, 300):
            f.write(json.dumps({"event": "eval", "job": "x", "step": step, "val_loss": 1.0, "val_ppl": 2.7,
                                "val_bpc": 3.0 + offset - step / 300, "train_loss": None, "best": False}) + "\n")
    return folder


@sync
async def test_runs_open_continue_and_overlay():
    from engine.runs.folders import runs_root as runs_dir

    root = runs_dir()
    a = _write_run(root, "run-lstm", "lstm", 0.5)
    _write_run(root, "run-rnn", "rnn", 0.0)
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        runs = app.pane("runs")
        await pilot.press("5")
        await wait_for(pilot, lambda: len(runs.runs) == 2, what="runs listed")
        assert [r.name for r in runs.runs] == ["run-lstm", "run-rnn"]  # newest first
        await pilot.press("space", "down", "space", "o")
        plot = app.query_one("#overlay")
        await wait_for(pilot, lambda: len(plot.series) == 2, what="overlay")
        assert sorted(plot.series) == ["run-lstm", "run-rnn"]
        assert plot.series["run-lstm"].ys == pytest.approx([3.5 - s / 300 for s in (100, 200, 300)])
        await pilot.press("up", "enter")
        await wait_for(pilot, lambda: app.model_run == str(a), what="run opened")
        await pilot.press("4")
        gen = app.query_one("#generate")
        app.query_one("#prompt").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: sent(engine, P.Generate))
        assert sent(engine, P.Generate)[-1].source == str(a)
        await pilot.press("5")
        app.query_one("#runs-table").focus()
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("enter")  # the dialog: 1000 more steps
        await wait_for(pilot, lambda: sent(engine, P.StartTraining), what="continue")
        assert sent(engine, P.StartTraining)[-1].resume_from == str(a)
        assert gen is not None


@sync
async def test_stale_events_are_dropped():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None)
        curve = app.query_one("#train").curve
        before, dropped = curve.points_received, app.dropped_events
        stale = P.StepMetrics(job="train-old", points=(P.StepPoint(1, 1.0, 1e-3, 1.0, 1.0, 1.0, 1),))
        app.post_message(__import__("tui.messages", fromlist=["EngineEvents"]).EngineEvents(
            [stale, P.GeneratedToken(job="gen-old", text="x")]))
        await pilot.pause(0.1)
        assert curve.points_received == before
        assert app.dropped_events == dropped + 2


@sync
async def test_worker_crash_is_a_notification_and_training_can_restart():
    engines: list[FakeEngine] = []

    def factory() -> FakeEngine:
        engines.append(FakeEngine(steps_per_poll=2, crash_at_step=10 if not engines else None))
        return engines[-1]

    app = SeqplayApp(engine_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        await wait_for(pilot, lambda: app.train_job is None, what="crash handled")
        assert any("died" in m for m in notifications(app))
        assert app.is_running
        await pilot.press("t")
        await wait_for(pilot, lambda: app.train_job is not None, what="restarted")
        assert len(engines) == 2 and engines[0].closed


@sync
async def test_help_palette_and_log_toggle():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        from tui.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        from tui.commands import KeysProvider
        from tui.help import keys_markdown

        titles = [title for title, _help, _cb in KeysProvider(app.screen)._commands()]
        for spec in PANES:
            assert f"Show {spec.title}" in titles
        assert "Train: Pause" in titles and "Start training" in titles  # pane keys and app keys
        help_text = keys_markdown(app)
        for binding in type(app.pane("train")).BINDINGS:
            assert f"| {binding.key} | Train | {binding.tooltip or binding.description} |" in help_text
        await app.run_action("pane('train', 'toggle_log')")
        await pilot.pause()
        assert app.query_one("#train").curve.log_y
        await pilot.press("m", "v")  # Train pane keys: the pane has focus after the palette action
        assert app.query_one("#train").curve.smooth > 0 and app.query_one("#train").metric == "ppl"


def test_tui_imports_no_torch():
    code = "import sys, tui.app, tests.fake_engine, tui.panes.train, tui.panes.generate; import tui.app as a; " \
           "[a._load(p.target) for p in a.PANES]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
