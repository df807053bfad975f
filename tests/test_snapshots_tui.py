"""Snapshot tests of every pane, driven by the deterministic FakeEngine: Data, Model, Train and the help
screen at 80x24 (a first-class size) and 160x48; Generate and Runs at 120x40.

Anything time-dependent is frozen: the fake's metrics do not read the clock, training runs to a fixed
step budget, cursor blink is off, the time zone is UTC and the speed estimate uses a fixed CPU rate.
Update the baselines after an intended change with
`pytest tests/test_snapshots_tui.py --snapshot-update` and look at the SVGs before committing.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from engine import planning
from engine.runs.folders import runs_root
from tests.fake_engine import FakeEngine
from tui.app import SeqplayApp

SIZE = (120, 40)
SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _frozen(monkeypatch):
    monkeypatch.chdir(HERE.parent)
    monkeypatch.setenv("HOME", str(HERE.parent))  # the browse folder reads ~/tests/tui_files in any checkout
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setitem(planning.DEVICE_FLOPS, "cpu", 1e10)
    yield
    time.tzset()


def make_app(**fake) -> SeqplayApp:
    engine = FakeEngine(steps_per_poll=20, tokens_per_poll=10, **fake)
    return SeqplayApp(engine_factory=lambda: engine, device="cpu", browse_root="tests/tui_files")


async def settle(pilot, condition, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("the app did not reach the expected state")
        await pilot.pause(0.05)
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    pilot.app.clear_notifications()  # toasts expire with time
    train = pilot.app.pane("train")
    train._show_status()  # the status line and charts are redrawn by timers: draw them now
    if train.is_mounted and train.children:
        for plot in train.plots:
            if plot.region.area:
                plot.redraw_now()
    await pilot.pause(0.4)


async def loaded(pilot) -> None:
    data = pilot.app.pane("data")
    tree = data.query_one("#files")
    # the file tree fills in a worker: wait for it, so the picture does not depend on timing
    await settle(pilot, lambda: data.stats is not None and data.counts is not None and len(tree.root.children) > 0)


async def trained(pilot) -> None:
    app = pilot.app
    await loaded(pilot)
    app.pane("model").query_one("#steps", Input).value = "300"
    await pilot.press("t")
    await settle(pilot, lambda: app.train_job is None and app.model_run is not None)
    for plot in app.pane("train").plots:
        plot.redraw_now()
    await pilot.pause(0.3)


@SIZES
def test_data_pane(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=loaded)


@SIZES
def test_model_pane(snap_compare, size):
    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("2")
        await settle(pilot, lambda: pilot.app.pane("model").params_shown is not None)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@SIZES
def test_train_pane_after_a_run(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=trained)


@SIZES
def test_train_pane_log_scale_perplexity(snap_compare, size):
    async def run_before(pilot):
        await trained(pilot)
        await pilot.press("y", "v")
        await settle(pilot, lambda: True)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@SIZES
def test_train_pane_snapshot_sample_at_the_cursor(snap_compare, size):
    async def run_before(pilot):
        await trained(pilot)
        train = pilot.app.pane("train")
        train.curve.focus()
        await pilot.press("home", *["shift+right"] * 12, "enter")  # step 121: the step-100 snapshot
        await settle(pilot, lambda: train.snap_step == 100 and train.snap_gen is None)

    assert snap_compare(make_app(snapshot_base=50), terminal_size=size, run_before=run_before)


def test_generate_pane(snap_compare):
    async def run_before(pilot):
        await trained(pilot)
        await pilot.press("4")
        gen = pilot.app.pane("generate")
        gen.query_one("#s-max_tokens", Input).value = "60"
        gen.query_one("#prompt", Input).value = "once "
        gen.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: gen.done_reason == "max_tokens")
        await pilot.press("left", "left")
        await pilot.pause(0.1)
        pilot.app.clear_notifications()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def _runs(root: Path) -> None:
    for i, (name, arch) in enumerate((("lstm-grammar", "lstm"), ("rnn-grammar", "rnn"), ("transformer-grammar", "transformer"))):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({
            "arch": arch, "source": "grammar", "params": 200_000 + i, "steps": 1000, "best_val_bpc": 2.5 - 0.4 * i,
            "status": "done", "created": 1_700_000_000.0 + i, "updated": 1_700_000_000.0 + i}))
        with open(folder / "metrics.jsonl", "w") as f:
            for step in range(100, 1001, 100):
                f.write(json.dumps({"event": "eval", "job": name, "step": step, "val_loss": 1.0, "val_ppl": 2.7,
                                    "val_bpc": 2.5 - 0.4 * i + 2.0 * (100 / step), "best": False}) + "\n")


def test_runs_pane_overlay(snap_compare):
    _runs(runs_root())

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("5")
        runs = pilot.app.pane("runs")
        await settle(pilot, lambda: len(runs.runs) == 3)
        runs.query_one("#runs-table").focus()
        await pilot.press("space", "down", "space", "down", "space", "o")
        await settle(pilot, lambda: len(pilot.app.query_one("#overlay").series) == 3)
        pilot.app.clear_notifications()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


@SIZES
def test_help_screen(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, press=["question_mark"], run_before=loaded)
