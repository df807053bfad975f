"""Pilot tests of the generation lab (real app, scripted FakeEngine): every sampling control, Enter in
a field generates, presets saved, history and branches as an undoable tree with continuous numbering,
the chosen token always listed, newline as ⏎, ctrl+t keeps the prompt, the model changes only when
the user says so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from engine.generation.settings import SamplingSettings
from engine.worker import protocol as P
from tests.fake_engine import FakeEngine
from tests.pilot_helpers import sync, wait_for
from tests.test_runs_manage import make_run
from tui.app import SeqplayApp
from tui.panes.generate import SKIPPED, GeneratePane
from tui.widgets.ask_text import AskText

SIZE = (100, 34)






def generates(engine: FakeEngine) -> list[P.Generate]:
    return [c for c in engine.sent if isinstance(c, P.Generate)]


def runs_root():
    from engine.runs.folders import runs_root as root

    return root()


async def open_lab(pilot, app) -> GeneratePane:
    await pilot.press("4")
    gen = app.query_one(GeneratePane)
    await wait_for(pilot, lambda: gen.is_mounted and gen.children, what="the Generate pane")
    await pilot.pause()
    return gen


async def generated(pilot, app, prompt: str, **fields: str) -> GeneratePane:
    """The Generate pane after one generation of ``prompt`` with these sampling fields (``max_tokens="4"``...)."""
    gen = await open_lab(pilot, app)
    app.query_one("#prompt").value = prompt
    for name, value in fields.items():
        gen.query_one(f"#s-{name}", Input).value = value
    gen.start_generation()
    await wait_for(pilot, lambda: not gen.running, what="the generation")
    return gen


def lab_app(engine: FakeEngine | None = None) -> tuple[SeqplayApp, FakeEngine]:
    engine = engine or FakeEngine()
    run = make_run(runs_root(), "alpha")
    app = SeqplayApp(engine_factory=lambda: engine)
    app.model_run = str(run)
    return app, engine


@sync
async def test_every_sampling_control_and_enter_in_a_field_generates():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await open_lab(pilot, app)
        names = {f.name for f in dataclasses.fields(SamplingSettings)} - SKIPPED
        assert all(gen.query(f"#s-{n}") for n in names)  # one control per setting
        app.query_one("#prompt").value = "the"
        gen.query_one("#s-presence_penalty", Input).value = "0.5"
        gen.query_one("#s-no_repeat_ngram", Input).value = "3"
        gen.query_one("#s-stop", Input).value = r"\n,END"
        gen.query_one("#s-temperature", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: generates(engine), what="Generate")
        s = generates(engine)[-1].settings
        assert s["presence_penalty"] == 0.5 and s["no_repeat_ngram"] == 3 and s["stop"] == ["\n", "END"]
        gen.query_one("#s-top_p", Input).value = "1.5"
        gen.start_generation()
        await pilot.pause()
        assert len(generates(engine)) == 1
        assert any("top-p must be in" in n.message for n in app._notifications)


@sync
async def test_presets_are_saved_and_loaded(_seqplay_home):
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await open_lab(pilot, app)
        gen.query_one("#s-temperature", Input).value = "0.3"
        gen.query_one("#s-top_k", Input).value = "7"
        gen.action_save_preset()
        await wait_for(pilot, lambda: isinstance(app.screen, AskText) and app.screen.query("#ask-input")
                       and app.screen.query_one("#ask-input").has_focus, what="the name dialog")
        app.screen.query_one("#ask-input", Input).value = "cold"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, AskText), what="the dialog to close")
        saved = json.loads((_seqplay_home / "config" / "presets.json").read_text())
        assert saved == {"cold": {"temperature": 0.3, "top_k": 7}}
        gen.apply_preset("greedy")
        await pilot.pause()
        assert gen.query_one("#s-temperature", Input).value == "0.0" and gen.query_one("#s-top_k", Input).value == "0"
        gen.apply_preset("cold")
        await pilot.pause()
        assert gen.settings()["temperature"] == 0.3 and gen.settings()["top_k"] == 7


@sync
async def test_history_branches_tree_undo_and_continuous_numbering():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await generated(pilot, app, "a", max_tokens="12")
        first = gen.history.current
        gen.start_generation()
        await wait_for(pilot, lambda: not gen.running, what="second generation")
        assert len(gen.history.roots) == 2 and first.tokens  # the first one is kept
        gen.output.cursor = 8
        await pilot.pause()
        gen.branch(2)
        await wait_for(pilot, lambda: len(gen.history.current.tokens) == 9, what="the forced token")
        child = gen.history.current
        assert child.parent is gen.history.roots[1] and child.tokens[:8] == child.parent.tokens[:8]
        assert child.logprob < 0 and child.logprob != child.parent.logprob
        assert str(gen.query_one("#token-info", Static).render()).startswith("#8 ")  # numbering runs on
        gen.history.current = first  # navigate, as selecting the tree node does
        gen._show_current()
        assert gen.output.tokens is first.tokens
        gen.history.current = child
        await pilot.press("ctrl+z")
        assert gen.history.current is child.parent and child not in child.parent.children


@sync
async def test_chosen_token_outside_the_top_is_listed_and_newline_is_a_glyph():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await generated(pilot, app, "x", max_tokens="1")
        alts = tuple(P.TokenAlternative(token=i, text=c, prob=p) for i, c, p in ((1, "a", 0.5), (2, "\n", 0.3)))
        tok = P.GeneratedToken(job=gen.gen_id, index=0, token=9, text="q", prob=0.0, raw_prob=0.01, top=alts)
        gen.apply([tok])  # a forced/filtered token the top alternatives do not hold
        await pilot.pause()
        table = gen.query_one("#alternatives", DataTable)
        rows = [[str(c) for c in table.get_row_at(r)] for r in range(table.row_count)]
        assert rows[1][1] == "⏎" and all("'" not in cell for row in rows for cell in row)
        assert rows[-1] == ["▶—", "q", "—", "0.010"]  # filtered to 0: no processed rank or p
        info = str(gen.query_one("#token-info", Static).render())
        assert "outside the top 2" in info and "filtered" in info


@sync
async def test_alternatives_the_filter_removed_are_struck_out_and_can_be_forced():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await generated(pilot, app, "x", max_tokens="4", top_k="2")
        gen.output.cursor = 1
        await pilot.pause()
        tok = gen.output.current()
        table = gen.query_one("#alternatives", DataTable)
        cells = [table.get_row_at(r) for r in range(table.row_count)]
        assert [str(c[0]).strip("▶ ") for c in cells] == ["1", "2", "—", "—", "—"]
        for cell, alt in zip(cells, tok.top):
            assert ("strike" in str(cell[1].style)) is alt.removed  # removed rows are struck out, kept ones not
            assert str(cell[2]) == ("—" if alt.removed else f"{alt.prob:.3f}") and str(cell[3]) == f"{alt.raw_prob:.3f}"
        chosen = next(k for k, a in enumerate(tok.top) if a.token == tok.token)
        assert str(cells[chosen][0]).startswith("▶") and "bold" in str(cells[chosen][1].style)
        info = str(gen.query_one("#token-info", Static).render())
        assert f"p={tok.prob:.3f} raw {tok.raw_prob:.3f} · rank {chosen + 1}" in info
        removed = tok.top[-1]
        gen.branch(len(tok.top) - 1)  # enter on a removed row forces it
        await wait_for(pilot, lambda: len(gen.history.current.tokens) == 2, what="the forced token")
        assert gen.history.current.tokens[1].token == removed.token
        assert [c.choose for c in engine.sent if isinstance(c, P.GenerateStep)][-1] == removed.token


@sync
async def test_ctrl_t_keeps_the_prompt():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_lab(pilot, app)
        prompt = app.query_one("#prompt", Input)
        prompt.value = "hello"
        prompt.focus()
        prompt.cursor_position = len("hello")
        await pilot.press("ctrl+t")
        await pilot.press("x")
        assert prompt.value == "hellox" and app.query_one("#step-mode").value is True


@sync
async def test_a_finished_run_does_not_replace_the_picked_model():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await open_lab(pilot, app)
        picked = app.model_run
        gen.model_choice = picked
        other = str(make_run(runs_root(), "beta"))
        app._finished(P.Finished(job="t", step=5, reason="done", run_dir=other))
        await pilot.pause()
        assert gen.model_choice == picked and app.model_run == picked
        app.query_one("#prompt").value = "a"
        gen.start_generation()
        await wait_for(pilot, lambda: generates(engine), what="Generate")
        assert generates(engine)[-1].source == picked
        gen.model_choice = None  # following the live model: a finished run is then the natural next model
        gen.run_finished(other)
        assert gen.model_choice == other


@sync
async def test_beams_send_a_beam_search_and_list_the_hypotheses_with_scores():
    app, engine = lab_app()
    async with app.run_test(size=(80, 24)) as pilot:
        gen = await open_lab(pilot, app)
        gen.query_one("#s-max_tokens", Input).value = "12"
        beams = gen.query_one("#s-beams", Input)
        beams.focus()
        await pilot.press("backspace", "3")
        gen.query_one("#s-length_penalty", Input).value = "0.5"
        gen.query_one("#prompt", Input).value = "the "
        beams.focus()
        await pilot.press("enter")  # enter in the beams field searches
        await wait_for(pilot, lambda: gen.done_reason == "max_tokens", what="the beam search")
        cmd = generates(engine)[-1]
        assert (cmd.beams, cmd.length_penalty, cmd.prompt, cmd.max_tokens) == (3, 0.5, "the ", 12)
        shown = str(gen.query_one("#gen-beams", Static).render())
        lines = [line for line in shown.splitlines() if line[:1].isdigit()]
        assert [line.split(" · ")[0].split(". ")[1] for line in lines] == [f"score {-2.0 * k * 12 / 10 / 12 ** 0.5:.3f}" for k in (1, 2, 3)]
        assert "the cat sat " in shown and "he cat sat o" in shown  # each hypothesis's text
        assert gen.query_one("#gen-beams").region.right <= 80  # wrapped inside the pane
        gen.query_one("#s-beams", Input).value = "1"  # back to sampling: the list goes away
        gen.start_generation()
        assert not gen.query_one("#gen-beams").has_class("shown")
        await wait_for(pilot, lambda: len(generates(engine)) == 2, what="the sampling command")
        assert generates(engine)[-1].beams == 1


@sync
async def test_a_bad_beam_width_is_one_line_and_sends_nothing():
    app, engine = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        gen = await open_lab(pilot, app)
        gen.query_one("#s-beams", Input).value = "0"
        gen.start_generation()
        await pilot.pause()
        assert not generates(engine)
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("beams must be a positive whole number") for m in messages), messages


def test_every_sampling_control_has_its_own_label_that_fits():
    """The form's label column is 11 cells: each label fits with a space after it, and no two
    controls share a label (a cut-off "dynatemp" twice told them apart by position only)."""
    from tui.panes.generate import LABELS, SEARCH, sampling_fields

    names = [f.name for f in sampling_fields()] + [s.name for s in SEARCH]
    labels = [LABELS.get(n, n.replace("_", " ")) for n in names]
    assert all(len(label) <= 10 for label in labels), [x for x in labels if len(x) > 10]
    assert len(set(labels)) == len(labels)


@sync
async def test_the_snapshot_picker_points_generation_at_run_at_step():
    """The Generate pane samples from the picked snapshot of the run (the time machine): the source
    is RUN@STEP; blank is the run itself; a run without snapshots has nothing to pick."""
    from tests.fake_engine import fake_snapshots
    from tui.widgets.snapshot_picker import SnapshotPicker

    app, engine = lab_app()
    alpha = app.model_run
    fake_snapshots(Path(alpha), {0: ["scheduled"], 50: ["scheduled", "best"], 100: ["scheduled", "last"]})
    async with app.run_test(size=SIZE) as pilot:
        gen = await open_lab(pilot, app)
        at = gen.query_one("#gen-at", SnapshotPicker)
        await wait_for(pilot, lambda: at.run == alpha and len(at.snaps) == 3, what="alpha's snapshots")
        assert not at.disabled
        app.query_one("#prompt").value = "the"
        gen.start_generation()
        await wait_for(pilot, lambda: len(generates(engine)) == 1, what="the first Generate")
        at.value = "@50"
        await pilot.pause()
        await wait_for(pilot, lambda: not gen.running, what="the first generation")
        gen.start_generation()
        await wait_for(pilot, lambda: len(generates(engine)) == 2, what="the second Generate")
        assert [g.source for g in generates(engine)] == [alpha, f"{alpha}@50"]
        beta = make_run(runs_root(), "beta")  # no snapshots: the run itself
        gen.set_model_label("beta", str(beta))
        await wait_for(pilot, lambda: at.run == str(beta) and at.disabled, what="beta listed")
        await wait_for(pilot, lambda: not gen.running, what="the second generation")
        gen.start_generation()
        await wait_for(pilot, lambda: len(generates(engine)) == 3, what="the third Generate")
        assert generates(engine)[-1].source == str(beta)
