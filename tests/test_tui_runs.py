"""Pilot tests of the Runs pane: figures columns, rename, note, delete to the trash and undo, config
diff of two runs, overlays by step / tokens / time (on the FakeEngine; run folders written here)."""

from __future__ import annotations

from tests.fake_engine import FakeEngine
from tests.pilot_helpers import dialog_closed, sync, wait_for
from tests.test_runs_manage import make_run
from tui.app import SeqplayApp
from tui.widgets.ask_text import AskText, ShowDiff

SIZE = (120, 36)






def runs_root():
    from engine.runs.folders import runs_root as root

    return root()


async def open_runs(pilot, app):
    await pilot.press("5")
    runs = app.pane("runs")
    await wait_for(pilot, lambda: runs.is_mounted and len(runs.runs) == 2, what="runs listed")
    runs.query_one("#runs-table").focus()
    await pilot.pause()
    return runs


@sync
async def test_rename_note_delete_and_undo():
    root = runs_root()
    make_run(root, "alpha", lr=1e-3)
    make_run(root, "beta", lr=3e-3)
    app = SeqplayApp(engine_factory=FakeEngine)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot, app)
        table = runs.query_one("#runs-table")
        row = [str(c) for c in table.get_row_at(0)]
        assert row[5:8] == ["1.0k", "0:12", "0.03"], row  # tokens seen, wall time, final LR (beta: newest first)
        name = runs._current().name
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, AskText))
        assert app.screen.query_one("#ask-input").value == name  # pre-filled with the old name
        app.screen.query_one("#ask-input").value = "renamed"
        await pilot.press("enter")
        await wait_for(pilot, lambda: (root / "renamed").is_dir() and any(r.name == "renamed" for r in runs.runs),
                       what="the rename")
        assert not (root / name).exists()
        runs.query_one("#runs-table").move_cursor(row=[r.name for r in runs.runs].index("renamed"))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, AskText))
        await pilot.press(*"too hot", "enter")
        await wait_for(pilot, lambda: runs.figures.get(str(root / "renamed")) and
                       runs.figures[str(root / "renamed")].note == "too hot", what="the note")
        await dialog_closed(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(runs.runs) == 1, what="the delete")
        assert not (root / "renamed").exists() and any((root / ".trash").iterdir())
        await pilot.press("u")
        await wait_for(pilot, lambda: len(runs.runs) == 2, what="the undo")
        assert (root / "renamed").is_dir()


@sync
async def test_diff_of_two_runs_and_overlay_axes():
    root = runs_root()
    make_run(root, "alpha", lr=1e-3)
    make_run(root, "beta", lr=3e-3)
    app = SeqplayApp(engine_factory=FakeEngine)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot, app)
        await pilot.press("D")
        await pilot.pause()
        assert not isinstance(app.screen, ShowDiff)  # needs two selected
        await pilot.press("space", "down", "space", "D")
        await wait_for(pilot, lambda: isinstance(app.screen, ShowDiff), what="the diff")
        assert app.screen.rows == [("lr", 1e-3, 3e-3)] or app.screen.rows == [("lr", 3e-3, 1e-3)]
        await pilot.press("escape")
        await pilot.press("o")
        plot = app.query_one("#overlay")
        await wait_for(pilot, lambda: len(plot.series) == 2, what="overlay")
        assert plot.series["alpha"].xs == [5.0, 10.0]
        await pilot.press("a")
        await wait_for(pilot, lambda: plot.xlabel == "tokens seen" and plot.series and
                       plot.series["alpha"].xs == [500.0, 1000.0], what="tokens axis")
        await pilot.press("a")
        await wait_for(pilot, lambda: plot.xlabel == "seconds" and plot.series and
                       plot.series["alpha"].xs == [2.5, 5.0], what="time axis")


def _notes(app) -> list[str]:
    return [n.message for n in app._notifications]


@sync
async def test_save_card_sends_write_card_and_says_where_it_went():
    root = runs_root()
    make_run(root, "alpha", lr=1e-3)
    make_run(root, "beta", lr=3e-3)
    engine = FakeEngine()
    app = SeqplayApp(engine_factory=lambda: engine)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot, app)
        picked = runs._current()
        await pilot.press("w")
        await wait_for(pilot, lambda: any(m.startswith("card saved in") for m in _notes(app)), what="the card notice")
        sent = [c for c in engine.sent if c.kind == "write_card"]
        assert len(sent) == 1 and sent[0].run == str(picked.path) and sent[0].out is None
        assert f"card saved in {picked.path / 'card'}" in _notes(app)
        assert runs.card_job is None  # done: the next w writes again
        await pilot.press("w")
        await wait_for(pilot, lambda: len([c for c in engine.sent if c.kind == "write_card"]) == 2, what="a second card")
