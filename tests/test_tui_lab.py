"""Pilot tests of the Lab pane (A/B, stages, timeline) in the real app on the scripted FakeEngine: the
commands it sends, what it draws from the answers, cancel, bad settings refused in one line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import Input, OptionList, Static, TabbedContent

from engine.worker import protocol as P
from tests.fake_engine import FAKE_SNAPSHOTS, FakeEngine, fake_timeline_text
from tests.pilot_helpers import sync, wait_for
from tui.app import SeqplayApp
from tui.panes.lab import LabPane
from tui.widgets.run_picker import RunPicker

SIZE = (120, 36)






def text_of(pane: LabPane, wid: str) -> str:
    from rich.console import Console

    console = Console(width=200, color_system=None, record=True, file=io.StringIO())
    console.print(pane.query_one(wid, Static).content)
    return console.export_text()


def sent(engine: FakeEngine, cls: type) -> list:
    return [c for c in engine.sent if isinstance(c, cls)]


def fake_snapshot_run(root: Path, steps=(0, 4, 8)) -> Path:
    """A run folder holding snapshot JSONs only (what list_snapshots reads; no tensors needed here)."""
    run = root / "snap-run"
    (run / "snapshots").mkdir(parents=True)
    for s in steps:
        tags = ["scheduled"] + (["last"] if s == steps[-1] else [])
        (run / "snapshots" / f"snap-{s:06d}.json").write_text(json.dumps(
            {"kind": "snapshot", "step": s, "tags": tags, "last_val_loss": 3.0 - s / 10}))
    return run


async def open_lab(pilot, app: SeqplayApp, tab: str = "ab") -> LabPane:
    await pilot.press("7")
    pane = app.query_one(LabPane)
    await wait_for(pilot, lambda: pane.is_mounted and pane.children, what="the Lab pane")
    await pilot.pause(0.2)
    pane.query_one("#lab-tabs", TabbedContent).active = f"lab-{tab}"
    await pilot.pause()
    return pane


async def pick(pilot, pane: LabPane, wid: str, path: str) -> None:
    picker = pane.query_one(wid, RunPicker)
    picker.set_options([(Path(path).name, path)])
    picker.value = path
    await pilot.pause()


@sync
async def test_ab_sends_both_sides_and_marks_the_divergence():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app)
        await pick(pilot, pane, "#ab-run-a", "/runs/a")
        pane.query_one("#ab-set-b", Input).value = "temperature=1.5, top_k=40"
        pane.query_one("#ab-seed", Input).value = "7"
        pane.query_one("#ab-prompt", Input).value = "once "
        pane.action_run_lab()
        await wait_for(pilot, lambda: "compare" in pane.last, what="the A/B result")
        (cmd,) = sent(engine, P.Compare)
        assert cmd.run_a == "/runs/a" and cmd.run_b is None and cmd.seed == 7 and cmd.prompt == "once "
        assert cmd.settings_b["temperature"] == 1.5 and cmd.settings_b["top_k"] == 40
        assert cmd.settings_a["temperature"] == 1.0  # side A untouched: the defaults
        a, b = text_of(pane, "#ab-out-a"), text_of(pane, "#ab-out-b")
        assert "the cat sat▍ on the mat" in a and "the cat sat▍ and the mouse" in b
        assert "mean log-prob -1.234" in a and "mean log-prob -1.876" in b
        assert "first divergence at token 11" in text_of(pane, "#ab-status")
        assert not pane.running


@sync
async def test_ab_compares_two_snapshots_of_one_run():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app)
        await pick(pilot, pane, "#ab-run-a", "/runs/a")
        pane.query_one("#ab-at-a", Input).value = "100"
        pane.query_one("#ab-at-b", Input).value = "best"
        pane.action_run_lab()
        await wait_for(pilot, lambda: "compare" in pane.last, what="the A/B result")
        (cmd,) = sent(engine, P.Compare)
        assert (cmd.run_a, cmd.run_b) == ("/runs/a@100", "/runs/a@best")
        pane.query_one("#ab-at-b", Input).value = "soon"
        pane.action_run_lab()
        await pilot.pause()
        assert any("snapshot step" in n.message for n in app._notifications) and len(sent(engine, P.Compare)) == 1


@sync
async def test_ab_needs_a_run_and_refuses_bad_settings_in_one_line():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app)
        pane.action_run_lab()
        await pilot.pause()
        assert any("pick a run for side A" in n.message for n in app._notifications)
        await pick(pilot, pane, "#ab-run-a", "/runs/a")
        for bad, words in (("temprature=2", "unknown sampling setting"), ("top_p=3", "top-p"), ("top_k", "name=value")):
            pane.query_one("#ab-set-a", Input).value = bad
            pane.action_run_lab()
            await pilot.pause()
            assert any(words in n.message and "\n" not in n.message for n in app._notifications), bad
        assert not sent(engine, P.Compare)


@sync
async def test_the_sides_stack_when_narrow():
    app = SeqplayApp(engine_factory=FakeEngine)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_lab(pilot, app)
        a, b = pane.query_one("#ab-side-a"), pane.query_one("#ab-side-b")
        assert pane.query_one("#ab-sides").has_class("stacked") and a.region.y < b.region.y
    app = SeqplayApp(engine_factory=FakeEngine)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await open_lab(pilot, app)
        a, b = pane.query_one("#ab-side-a"), pane.query_one("#ab-side-b")
        assert a.region.y == b.region.y and a.region.x < b.region.x


@sync
async def test_stages_show_bars_removed_and_boosted_tokens_and_brackets_move_the_position():
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app, "stages")
        await pick(pilot, pane, "#st-run", "/runs/a")
        pane.query_one("#st-set", Input).value = "top_k=2 temperature=0.7"
        pane.query_one("#st-pos", Input).value = "5"
        pane.action_run_lab()
        await wait_for(pilot, lambda: "stage_view" in pane.last, what="the stage view")
        (cmd,) = sent(engine, P.StageView)
        assert cmd.position == 5 and cmd.settings["top_k"] == 2 and cmd.settings["temperature"] == 0.7
        view = text_of(pane, "#st-view")
        assert "temperature" in view and "top_k" in view and "kept 2" in view
        assert "removed" in view and "↑" in view and "█" in view
        pane.query_one("#st-run").focus()
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: len(sent(engine, P.StageView)) == 2, what="a second stage view")
        assert sent(engine, P.StageView)[-1].position == 6


@sync
async def test_timeline_lists_snapshots_streams_samples_and_arrows_move(tmp_path):
    engine = FakeEngine()
    run = fake_snapshot_run(tmp_path, steps=FAKE_SNAPSHOTS)
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app, "timeline")
        await pick(pilot, pane, "#tl-run", str(run))
        olist = pane.query_one("#tl-list", OptionList)
        await wait_for(pilot, lambda: olist.option_count == len(FAKE_SNAPSHOTS), what="the snapshot list")
        assert "not sampled yet" in text_of(pane, "#tl-sample")
        pane.query_one("#tl-seed", Input).value = "3"
        pane.action_run_lab()
        await wait_for(pilot, lambda: "timeline" in pane.last, what="the timeline")
        (cmd,) = sent(engine, P.Timeline)
        assert cmd.run == str(run) and cmd.seed == 3
        assert sorted(pane.samples) == list(FAKE_SNAPSHOTS)
        olist.focus()
        olist.highlighted = 0
        await pilot.pause()
        assert fake_timeline_text(0, cmd.max_tokens) in text_of(pane, "#tl-sample")
        await pilot.press("down", "down")
        assert "step 8" in text_of(pane, "#tl-sample")
        assert fake_timeline_text(8, cmd.max_tokens) in text_of(pane, "#tl-sample")
        await pilot.press("end")
        assert fake_timeline_text(20, cmd.max_tokens) in text_of(pane, "#tl-sample")


@sync
async def test_escape_cancels_a_lab_job_and_stale_events_are_dropped(tmp_path):
    engine = FakeEngine()
    engine.lab_polls = 10_000
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_lab(pilot, app)
        await pick(pilot, pane, "#ab-run-a", "/runs/a")
        pane.action_run_lab()
        await wait_for(pilot, lambda: "working" in text_of(pane, "#ab-status"), what="progress")
        job = pane.job
        pane.query_one("#ab-run-a").focus()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not pane.running, what="the cancel")
        assert sent(engine, P.CancelLab)[0].job == job
        assert "cancelled" in text_of(pane, "#ab-status")
        pane.apply([P.LabDone(job=job, lab="compare", data={"a": {}, "b": {}})])  # late: ignored
        assert "compare" not in pane.last


def test_the_lab_pane_imports_no_torch():
    code = "import sys, tui.panes.lab, tui.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
