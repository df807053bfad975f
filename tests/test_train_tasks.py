"""Training beyond next-token LMs: honest n-gram evaluation, seq2seq and masked-LM training."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from engine.data.sources import prepare
from engine.training.config import TrainConfig
from engine.training.trainer import Trainer
from engine.worker import protocol as P


def _run(events: list[P.Event] | None = None, **cfg) -> tuple[Trainer, list[P.Event]]:
    events = [] if events is None else events
    base = dict(threads=1, device="cpu", precision="fp32", compile="off", sample_every=0)
    trainer = Trainer(TrainConfig(**{**base, **cfg}), events.append)
    fin = trainer.run()
    assert fin.reason == "done", [e for e in events if isinstance(e, P.ErrorEvent)]
    return trainer, events


def _evals(events: list[P.Event]) -> list[P.EvalMetrics]:
    return [e for e in events if isinstance(e, P.EvalMetrics)]


# ------------------------------------------------------------------------------------------- n-gram
def test_ngram_val_loss_is_the_models_loss_over_the_whole_validation_split():
    source = "grammar:size=30000"
    trainer, events = _run(source=source, arch="ngram", model={"order": 4})
    reported = _evals(events)[-1].val_loss

    from engine.models.registry import build_model, make_config

    data = prepare(source, "char")
    model = build_model("ngram", make_config("ngram", data.tokenizer.vocab_size, order=4))
    model.fit(np.asarray(data.train_ids))
    val = torch.from_numpy(np.asarray(data.val_ids, dtype=np.int64))[None]
    with torch.no_grad():
        _, own, _ = model(val[:, :-1], val[:, 1:])
    assert abs(reported - own.item()) < 1e-4

    _, uni_events = _run(source=source, arch="ngram", model={"order": 1})
    unigram = _evals(uni_events)[-1].val_loss
    assert reported < unigram - 0.5  # context helps a lot on grammatical text
    assert _evals(events)[-1].val_bpc < 2.0  # the bug reported about 3.5 bits/char


# ------------------------------------------------------------------------------------------ seq2seq
S2S = dict(arch="seq2seq", model=dict(embed=16, width=64, attention="additive"), batch_size=32, lr=1e-2,
           warmup=10, eval_batches=4)


def test_seq2seq_learns_to_reverse_and_generates_from_its_run(tmp_path, capsys):
    rec: list[P.Event] = []
    trainer, _ = _run(rec, source="reverse:distance=4,n=2000", steps=200, eval_every=100,
                      runs_dir=str(tmp_path / "runs"), **S2S)
    last = _evals(rec)[-1]
    assert last.val_loss < 0.1 and last.accuracy is not None and last.accuracy >= 0.95
    assert math.isfinite(last.val_bpc) and last.val_bpc < 0.2  # bits per target character (eos = line end)
    assert any(isinstance(e, P.LogLine) and "1,800 training and 200 validation pairs" in e.text for e in rec)
    metrics = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["accuracy"] for m in metrics if m["event"] == "eval"][-1] == last.accuracy

    from engine.generation.generate import seq2seq_decode
    from engine.generation.processors import SamplingSettings
    from engine.runs.checkpoint import load_model

    loaded = load_model(trainer.run_dir)
    greedy = SamplingSettings(temperature=0.0)  # the default (temperature 1, a fresh seed) samples: flaky
    assert loaded.tokenizer.decode(seq2seq_decode(loaded.model, loaded.tokenizer, "abcd", greedy)) == "dcba"
    from seqplay.cli import main

    capsys.readouterr()  # drop whatever earlier tests or the training left on stdout
    try:
        main(["generate", str(trainer.run_dir), "-p", "cabd", "--temperature", "0", "--seed", "0"])
    except SystemExit as exit_:
        assert not exit_.code
    assert capsys.readouterr().out.strip().splitlines()[-1] == "dbac"


def test_seq2seq_resume_gives_the_same_next_losses(tmp_path):
    """The pair batcher, optimizer and RNG come back exactly: steps 11..20 equal an uninterrupted run's."""
    cfg = dict(source="copy:distance=5,n=300", steps=20, eval_every=10, runs_dir=str(tmp_path / "runs"), **S2S)
    full: list[P.Event] = []
    _run(full, run_name="full", **cfg)
    losses = {p.step: p.loss for e in full if isinstance(e, P.StepMetrics) for p in e.points}
    resumed: list[P.Event] = []
    fin = Trainer({}, resumed.append, resume_from=str(tmp_path / "runs" / "full" / "checkpoints" / "step-000010.json")).run()
    again = {p.step: p.loss for e in resumed if isinstance(e, P.StepMetrics) for p in e.points}
    assert fin.step == 20 and sorted(again) == list(range(11, 21))
    assert all(abs(again[s] - losses[s]) < 1e-6 for s in again)


def test_seq2seq_from_a_tab_separated_file_and_refuses_unpaired_text(tmp_path):
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("xyz"), size=rng.integers(1, 5))) for _ in range(200)]
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{w}\t{w.upper()}\n" for w in words), encoding="utf-8")
    rec: list[P.Event] = []
    _run(rec, source=str(path), steps=5, eval_every=5, runs_dir=str(tmp_path / "runs"), **S2S)
    assert 0.0 <= _evals(rec)[-1].accuracy <= 1.0
    assert any(isinstance(e, P.LogLine) and "180 training and 20 validation pairs" in e.text for e in rec)

    events: list[P.Event] = []
    fin = Trainer(TrainConfig(source="grammar:size=5000", runs_dir=str(tmp_path / "runs"), **S2S), events.append).run()
    errors = [e.message for e in events if isinstance(e, P.ErrorEvent)]
    assert fin.reason == "error" and "no source->target pairs" in errors[0] and "\n" not in errors[0]


# ------------------------------------------------------------------------------------------ masked LM
MLM = dict(arch="mlm", source="grammar:size=30000", context=32, batch_size=16, warmup=10, eval_batches=2)


def test_mlm_loss_falls_below_unigram_and_fills_blanks_from_its_run(tmp_path):
    rec: list[P.Event] = []
    trainer, _ = _run(rec, model=dict(encoder="lstm", layers=1, width=48, dropout=0.0), lr=5e-3, steps=150,
                      eval_every=75, runs_dir=str(tmp_path / "runs"), **MLM)
    first = next(p.loss for e in rec if isinstance(e, P.StepMetrics) for p in e.points)
    evals = _evals(rec)
    counts = np.bincount(np.asarray(trainer.data.train_ids), minlength=trainer.tokenizer.vocab_size) + 1
    probs = counts / counts.sum()
    unigram = float(-(probs * np.log(probs)).sum())  # entropy of the character distribution, nats
    assert first > unigram and evals[-1].val_loss < unigram - 0.5
    assert all(math.isnan(e.val_bpc) for e in evals)
    assert any(isinstance(e, P.LogLine) and "bits/char is not reported" in e.text for e in rec)

    from engine.generation.generate import fill_blanks
    from engine.runs.checkpoint import load_model

    loaded = load_model(trainer.run_dir)
    assert loaded.model.mask_token_id == loaded.tokenizer.vocab_size
    text, filled = fill_blanks(loaded.model, loaded.tokenizer, "the _og")
    assert len(filled) == 1 and len(text) == len("the dog") and text.startswith("the ") and text.endswith("og")


def test_mlm_evaluation_is_fixed_and_leaves_the_training_stream_alone(tmp_path):
    rec: list[P.Event] = []
    trainer, _ = _run(rec, model=dict(layers=1, width=32, heads=2, dropout=0.0), steps=5, eval_every=5,
                      runs_dir=str(tmp_path / "runs"), **MLM)
    rng = torch.get_rng_state()
    a, b = trainer.evaluate().val_loss, trainer.evaluate().val_loss
    assert a == b and torch.equal(rng, torch.get_rng_state())
    assert trainer.best_val_bpc is None and json.loads((trainer.run_dir / "run.json").read_text())["best_val_bpc"] is None


# ------------------------------------------------------------------------------------------ worker
def test_worker_trains_seq2seq_then_mlm(tmp_path):
    from engine.worker.client import WorkerClient

    base = dict(steps=6, eval_every=3, sample_every=3, threads=1, precision="fp32", runs_dir=str(tmp_path / "runs"))
    jobs = [TrainConfig(source="reverse:distance=4,n=200", **{**S2S, **base}),
            TrainConfig(model=dict(layers=1, width=32, heads=2), **{**MLM, **base})]
    with WorkerClient() as client:
        for cfg in jobs:
            client.send(P.StartTraining(config=cfg.to_dict()))
            seen: list[P.Event] = []
            deadline = time.monotonic() + 60
            while not any(isinstance(e, P.Finished) for e in seen) and time.monotonic() < deadline:
                seen += client.poll(0.1)
            fin = seen[-1]
            assert isinstance(fin, P.Finished) and fin.reason == "done" and fin.step == 6, seen[-3:]
            evals = _evals(seen)
            assert [e.step for e in evals] == [3, 6]
            assert (evals[-1].accuracy is not None) == (cfg.arch == "seq2seq")
            samples = [e for e in seen if isinstance(e, P.SampleText)]
            assert len(samples) == 2 and all(s.prompt for s in samples)  # source / blanked text shown


# ------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_seq2seq_reverses_twenty_characters():
    """The default reverse task (sources of 10-20 characters): >= 95% exact match in 600 steps (~30 s)."""
    rec: list[P.Event] = []
    _run(rec, source="reverse", steps=600, eval_every=300, **{**S2S, "model": dict(embed=32, width=128), "lr": 5e-3,
                                                              "warmup": 50})
    assert _evals(rec)[-1].accuracy >= 0.95
