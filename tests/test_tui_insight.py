"""Pilot tests of the Insight pane in the real app on the scripted FakeEngine: typed forms (no CLI
flags), values kept per analysis, Analyze through the protocol, progress, cancel, the n-gram offer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from textual.widgets import Input, ProgressBar, Select, Static

from engine.insight import params as IP
from engine.worker import protocol as P
from tests.fake_engine import FakeEngine, fake_snapshots
from tests.pilot_helpers import sync, wait_for
from tui.app import SeqplayApp
from tui.panes.insight import InsightPane

SIZE = (100, 34)






def analyses(engine: FakeEngine) -> list[P.Analyze]:
    return [c for c in engine.sent if isinstance(c, P.Analyze)]


async def open_insight(pilot, app: SeqplayApp) -> InsightPane:
    await pilot.press("6")
    pane = app.query_one(InsightPane)
    await wait_for(pilot, lambda: pane.is_mounted and pane.children, what="the Insight pane")
    await pilot.pause()
    return pane


def output(pane: InsightPane) -> str:
    """The result view as plain text (what the user reads)."""
    from rich.console import Console

    console = Console(width=120, color_system=None, record=True, file=io.StringIO())
    console.print(pane.query_one("#insight-output", Static).content)
    return console.export_text()


@sync
async def test_gradients_run_as_a_typed_job_with_progress():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        pane.form("gradients").control("distance").value = "40"
        pane.action_run_analysis()
        await wait_for(pilot, lambda: pane.last is not None, what="the result")
        (cmd,) = analyses(engine)
        assert isinstance(cmd.params, IP.GradientsParams) and cmd.params.distance == 40 and cmd.params.fresh
        assert cmd.run is None and not cmd.live
        assert pane.query_one(ProgressBar).percentage == 1.0
        assert "rnn" in output(pane) and "lstm" in output(pane)
        assert "gradients done" in str(pane.query_one("#insight-status", Static).render())


@sync
async def test_form_values_survive_switching_analysis_and_bad_values_are_refused():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        kind = pane.query_one("#insight-kind", Select)
        kind.value = "gates"
        await pilot.pause()
        pane.form("gates").control("pattern").value = "[aeiou]"
        kind.value = "attention"
        await pilot.pause()
        kind.value = "gates"
        await pilot.pause()
        assert pane.form("gates").control("pattern").value == "[aeiou]"
        kind.value = "gradients"
        await pilot.pause()
        pane.form("gradients").control("distance").value = "1"
        pane.action_run_analysis()
        await pilot.pause()
        assert not analyses(engine)
        assert any("distance must be at least 2" in n.message for n in app._notifications)


@sync
async def test_the_second_run_of_a_surprisal_difference_is_picked_not_typed():
    from engine.runs.folders import runs_root
    from tests.test_runs_manage import make_run
    from tui.widgets.run_picker import RunPicker

    a, b = make_run(runs_root(), "a"), make_run(runs_root(), "b")
    import torch

    from engine.runs.checkpoint import save_checkpoint

    for run in (a, b):  # an intact (hash-checked) checkpoint: the picker lists only runs it can open
        (run / "tokenizer.json").write_text("{}")
        save_checkpoint(run / "checkpoints" / "best.json", {"model.w": torch.zeros(1)}, {"step": 0})
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        other = pane.form("surprisal").control("other")
        assert isinstance(other, RunPicker)
        await wait_for(pilot, lambda: len(other.runs) == 2, what="the runs")
        pane.query_one("#insight-run").value = str(a)
        other.value = str(b)
        pane.query_one("#insight-kind", Select).value = "surprisal"
        await pilot.pause()
        pane.action_run_analysis()
        await wait_for(pilot, lambda: analyses(engine), what="Analyze")
        cmd = analyses(engine)[-1]
        assert cmd.run == str(a) and cmd.params.other == str(b)


@sync
async def test_an_analysis_that_needs_a_run_asks_for_one():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        pane.query_one("#insight-kind", Select).value = "surprisal"
        await pilot.pause()
        pane.action_run_analysis()
        await pilot.pause()
        assert not analyses(engine)
        assert any("pick a run" in n.message for n in app._notifications)


@sync
async def test_escape_cancels_a_running_analysis():
    engine = FakeEngine()
    engine.analysis_polls = 10_000
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        pane.action_run_analysis()
        await wait_for(pilot, lambda: pane.query_one(ProgressBar).progress > 2, what="progress")
        assert pane.running and "unit" in str(pane.query_one("#insight-status", Static).render())
        pane.query_one("#insight-go").focus()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not pane.running, what="the cancel")
        assert any(isinstance(c, P.CancelAnalysis) for c in engine.sent)
        assert pane.last.reason == "cancelled"


@sync
async def test_table_offers_to_train_the_ngram_baseline_in_one_key():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        pane.query_one("#insight-kind", Select).value = "table"
        await pilot.pause()
        pane.form("table").control("corpus").value = "grammar"
        pane.action_run_analysis()
        await wait_for(pilot, lambda: pane.last is not None, what="the table")
        assert "press b to train it" in str(pane.query_one("#insight-status", Static).render())
        pane.query_one("#insight-go").focus()
        await pilot.press("b")
        await wait_for(pilot, lambda: len(analyses(engine)) == 2 and not pane.running, what="the baseline run")
        cmd = analyses(engine)[-1]
        assert isinstance(cmd.params, IP.TableParams) and cmd.params.train == "ngram" and cmd.params.corpus == "grammar"
        assert pane.baseline_corpus is None and "base" in output(pane)


def test_tui_starts_no_subprocess():
    sources = {p: p.read_text(encoding="utf-8") for p in Path("tui").rglob("*.py")}
    assert sources
    offenders = [str(p) for p, text in sources.items()
                 if "import subprocess" in text or "-m seqplay" in text or "Popen(" in text]
    assert offenders == []
    assert not Path("tui/insight.py").exists()
    assert isinstance(Input, type)


@pytest.mark.slow
@sync
async def test_real_worker_runs_each_view_on_a_picked_run(tmp_path):
    """End to end on the real worker: every Insight view on a tiny LSTM and Transformer run."""
    from engine.training.trainer import Trainer
    from tests.train_helpers import tiny_config

    runs = {arch: Trainer(tiny_config(tmp_path, arch, steps=6, eval_every=3, run_name=f"{arch}-tour",
                                      runs_dir=None), emit=lambda e: None).run().run_dir
            for arch in ("lstm", "transformer")}
    app = SeqplayApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        picker = pane.query_one("#insight-run")
        await wait_for(pilot, lambda: len(picker.runs) == 2, what="the runs")
        plan = [("gates", "lstm", "gates"), ("surprisal", "lstm", "surprisal"), ("attention", "transformer", "attention"),
                ("memorization", "lstm", "memorization"), ("table", "lstm", "table")]
        for analysis, arch, expect in plan:
            picker.value = str(runs[arch])
            pane.query_one("#insight-kind", Select).value = analysis
            await pilot.pause()
            if analysis == "memorization":
                pane.form("memorization").control("tokens").value = "40"
            pane.action_run_analysis()
            await wait_for(pilot, lambda: not pane.running and pane.last is not None and pane.job is None, 120,
                           what=analysis)
            assert pane.last.reason == "done", (analysis, pane.last.message)
            assert pane.last.data["analysis"] == expect
        pane.query_one("#insight-kind", Select).value = "gradients"
        await pilot.pause()
        for name, value in (("archs", "rnn,lstm"), ("distance", "20"), ("seeds", "1"), ("windows", "2"),
                            ("width", "16"), ("source", str(tmp_path / "tiny.txt"))):
            pane.form("gradients").control(name).value = value
        pane.action_run_analysis()
        await wait_for(pilot, lambda: not pane.running and pane.job is None, 120, what="gradients")
        assert pane.last.reason == "done", pane.last.message
        assert [c["label"] for c in pane.last.data["curves"]] == ["rnn", "lstm"]
    app.shutdown_engine()


@sync
async def test_the_snapshot_picker_points_the_analysis_at_run_at_step():
    from engine.runs.checkpoint import save_checkpoint
    from engine.runs.folders import runs_root
    from tests.test_runs_manage import make_run
    from tui.widgets.snapshot_picker import SnapshotPicker

    a, b = make_run(runs_root(), "a"), make_run(runs_root(), "b")
    for run in (a, b):
        (run / "tokenizer.json").write_text("{}")
        save_checkpoint(run / "checkpoints" / "best.json", {"model.w": __import__("torch").zeros(1)}, {"step": 0})
    fake_snapshots(a, {0: ["scheduled"], 4: ["scheduled", "best"], 8: ["scheduled", "last"]})
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_insight(pilot, app)
        picker, at = pane.query_one("#insight-run"), pane.query_one("#insight-at", SnapshotPicker)
        await wait_for(pilot, lambda: len(picker.runs) == 2, what="the runs")
        picker.value = str(a)
        await wait_for(pilot, lambda: at.run == str(a) and len(at.snaps) == 3, what="a's snapshots")
        assert [v for _, v in at._options if isinstance(v, str)] == ["@best", "@last", "@0", "@4", "@8"]
        pane.query_one("#insight-kind", Select).value = "surprisal"
        await pilot.pause()
        pane.action_run_analysis()  # nothing picked in the snapshot picker: the run itself
        await wait_for(pilot, lambda: not pane.running, what="the first analysis")
        at.value = "@4"
        await pilot.pause()
        pane.action_run_analysis()
        await wait_for(pilot, lambda: len(analyses(engine)) == 2, what="the second Analyze")
        assert [c.run for c in analyses(engine)] == [str(a), f"{a}@4"]
        await wait_for(pilot, lambda: not pane.running, what="the second analysis")
        picker.value = str(b)  # a run without snapshots: nothing to pick, the run itself
        await wait_for(pilot, lambda: at.run == str(b) and not at.snaps and at.disabled, what="b listed")
        pane.action_run_analysis()
        await wait_for(pilot, lambda: len(analyses(engine)) == 3, what="the third Analyze")
        assert analyses(engine)[-1].run == str(b)
