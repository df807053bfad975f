"""The Generate pane's beam search on the real worker process: for the same run, prompt and settings
the hypotheses it shows are exactly ``engine.generation.beams.beam_search``'s (one beam search)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch
from textual.widgets import Input, Static

from engine.generation.beams import beam_search, beam_text
from engine.generation.jobs import GenerationJobs
from engine.generation.settings import SamplingSettings
from engine.runs.checkpoint import load_model
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from tests.train_helpers import Recorder, tiny_config
from tui.app import SeqplayApp


async def _wait(pilot, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.1)


async def _app_beams(run: str, prompt: str) -> tuple[tuple, dict, str]:
    app = SeqplayApp(device="cpu", remember=False)
    app.model_run = run
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("4")
            gen = app.pane("generate")
            await _wait(pilot, lambda: gen.is_mounted and gen.children, 10)
            for name, value in {"s-max_tokens": "12", "s-beams": "3", "s-length_penalty": "0.7",
                                "s-no_repeat_ngram": "3", "prompt": prompt}.items():
                gen.query_one(f"#{name}", Input).value = value
            gen.query_one("#s-beams", Input).focus()
            await pilot.press("enter")
            await _wait(pilot, lambda: gen.done_reason != "", 120)
            assert gen.done_reason != "error", [n.message for n in app._notifications]
            return gen.beams, gen.settings(), str(gen.query_one("#gen-beams", Static).render())
    finally:
        app.shutdown_engine()


def test_the_apps_beams_are_the_engines_beam_search(tmp_path: Path):
    fin = Trainer(tiny_config(tmp_path, steps=20), Recorder()).run()
    prompt = "the cat "
    shown, settings, rendered = asyncio.run(_app_beams(fin.run_dir, prompt))
    loaded = load_model(fin.run_dir)
    tok = loaded.tokenizer
    expected = beam_search(loaded.model, [int(i) for i in tok.encode(prompt)], width=3, length_penalty=0.7,
                           max_tokens=12, settings=SamplingSettings.from_dict(settings), tokenizer=tok)
    assert settings["no_repeat_ngram"] == 3  # the sampling chain's history stages travel with the search
    assert [b.text for b in shown] == [beam_text(b, tok) for b in expected]
    assert [b.tokens for b in shown] == [len(b.ids) for b in expected]
    assert [b.reason for b in shown] == [b.reason for b in expected]
    for got, want in zip(shown, expected):
        assert got.score == pytest.approx(want.score, abs=1e-4)
        assert got.logprob == pytest.approx(want.logprob, abs=1e-4)
        assert f"score {want.score:.3f}" in rendered


def test_beam_commands_and_results_survive_json():
    cmd = P.Generate(gen_id="g", prompt="ab", beams=4, length_penalty=0.5)
    assert P.command_from_json(cmd.to_json()) == cmd
    done = P.GenerationDone(job="g", text="x", beams=(P.BeamText("x", -1.0, -0.5, 2, "eot"), P.BeamText("y", -2.0)))
    assert P.event_from_json(done.to_json()) == done


def _gru():
    from engine.data.tokenizers import build_tokenizer
    from engine.models.registry import build_model, make_config

    tok = build_tokenizer("char", "the cat sat on the mat. the dog sat on the log.\n" * 4)
    torch.manual_seed(0)
    return build_model("gru", make_config("gru", tok.vocab_size, width=32, embed=16, layers=1)).eval(), tok


def test_the_worker_job_searches_a_slice_at_a_time_and_can_be_cancelled():
    model, tok = _gru()
    events: list = []
    jobs = GenerationJobs(events.append, slice_s=1e-4)  # about one search step per pump
    jobs.handle(P.Generate(gen_id="b", prompt="the ", max_tokens=30, beams=2, length_penalty=1.0), live=(model, tok))
    pumps = 0
    while jobs.busy:
        jobs.pump()
        pumps += 1
    assert pumps > 1 and not [e for e in events if not isinstance(e, P.GenerationDone)]
    want = beam_search(model, tok.encode("the ").tolist(), width=2, max_tokens=30, tokenizer=tok)
    assert [b.text for b in events[-1].beams] == [beam_text(b, tok) for b in want]
    events.clear()
    jobs.handle(P.Generate(gen_id="c", prompt="the ", max_tokens=10, beams=2), live=(model, tok))
    jobs.pump()
    jobs.handle(P.CancelGeneration(gen_id="c"))
    assert [(e.reason, e.beams) for e in events] == [("cancelled", ())]


def test_beams_on_a_seq2seq_model_are_refused_in_one_line():
    from engine.models.registry import build_model, make_config

    model, tok = _gru()
    s2s = build_model("seq2seq", make_config("seq2seq", tok.vocab_size + 3, width=16, embed=8, context=16)).eval()
    events: list = []
    GenerationJobs(events.append).handle(P.Generate(gen_id="s", prompt="ab", beams=2), live=(s2s, tok))
    errors = [e for e in events if isinstance(e, P.ErrorEvent)]
    assert len(errors) == 1 and "\n" not in errors[0].message and "seqplay generate RUN --beams" in errors[0].message
    assert events[-1] == P.GenerationDone(job="s", reason="error")
