"""Snapshots of the Generate and Runs panes at 80x24 and 160x48 (the Insight views are in
test_snapshots_insight.py), driven by the deterministic FakeEngine on run folders written here.

Update after an intended change: `pytest tests/test_snapshots_lab.py --snapshot-update`, then look at
the SVGs (or the PNGs `python benchmarks/render_screens.py` writes into docs/screens/).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from engine import planning
from tests.fake_engine import FakeEngine
from tests.test_runs_manage import make_run
from tui.app import SeqplayApp

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _frozen(monkeypatch):
    monkeypatch.chdir(HERE.parent)
    monkeypatch.setenv("HOME", str(HERE.parent))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setitem(planning.DEVICE_FLOPS, "cpu", 1e10)
    yield
    time.tzset()


def write_runs() -> list[Path]:
    from engine.runs.folders import runs_root

    out = []
    for i, (name, lr) in enumerate((("lstm-tiny", 1e-3), ("lstm-hot", 3e-3))):
        run = make_run(runs_root(), name, lr=lr)
        summary = json.loads((run / "run.json").read_text())
        summary.update(created=1_700_000_000.0 + i, params=120_000, steps=10, best_val_bpc=2.5 - 0.2 * i,
                       status="finished", note="baseline" if i == 0 else "")
        (run / "run.json").write_text(json.dumps(summary))
        (run / "tokenizer.json").write_text("{}")
        (run / "checkpoints" / "best.json").write_text("{}")
        out.append(run)
    return out


def make_app() -> SeqplayApp:
    engine = FakeEngine(steps_per_poll=20, tokens_per_poll=10)
    return SeqplayApp(engine_factory=lambda: engine, device="cpu", browse_root="tests/tui_files")


async def settle(pilot, condition, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("the app did not reach the expected state")
        await pilot.pause(0.05)
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    pilot.app.clear_notifications()
    await pilot.pause(0.3)


async def generated(pilot, run, **fields: str):
    """The Generate pane after generating from ``run`` with "the cat" and these sampling fields."""
    app = pilot.app
    await settle(pilot, lambda: app.pane("data").stats is not None)
    await pilot.press("4")
    gen = app.pane("generate")
    await settle(pilot, lambda: gen.is_mounted and gen.children)
    gen.set_model_label(run.name, str(run))
    for name, value in fields.items():
        gen.query_one(f"#s-{name}", Input).value = value
    gen.query_one("#prompt", Input).value = "the cat"
    gen.start_generation()
    await settle(pilot, lambda: not gen.running)
    return gen


@pytest.mark.parametrize("size", list(SIZES))
def test_generate_lab(snap_compare, size):
    runs = write_runs()

    async def run_before(pilot):
        gen = await generated(pilot, runs[0], max_tokens="60")
        gen.output.cursor = 20
        await pilot.pause()
        gen.branch(2)
        await settle(pilot, lambda: len(gen.history.current.tokens) == 21)
        gen.output.focus()

    assert snap_compare(make_app(), terminal_size=SIZES[size], run_before=run_before)


def test_generate_lab_removed_alternatives(snap_compare):
    """top-k 2: the alternatives the filter removed are struck out, with their raw p and — as p."""
    runs = write_runs()

    async def run_before(pilot):
        gen = await generated(pilot, runs[0], max_tokens="30", top_k="2")
        gen.output.cursor = 20
        gen.output.focus()

    assert snap_compare(make_app(), terminal_size=SIZES["80x24"], run_before=run_before)


@pytest.mark.parametrize("size", list(SIZES))
def test_runs_manage(snap_compare, size):
    write_runs()

    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: app.pane("data").stats is not None)
        await pilot.press("5")
        runs = app.pane("runs")
        await settle(pilot, lambda: runs.is_mounted and len(runs.runs) == 2)
        runs.query_one("#runs-table").focus()
        await pilot.press("space", "down", "space", "o", "a")
        await settle(pilot, lambda: len(app.query_one("#overlay").series) == 2
                     and app.query_one("#overlay").xlabel == "tokens seen")

    assert snap_compare(make_app(), terminal_size=SIZES[size], run_before=run_before)
