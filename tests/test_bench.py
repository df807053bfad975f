"""The benchmark suite: figures are measured (positive, finite), carry the environment, and land in
JSON; suites that need a missing corpus or script say so instead of failing. No timing assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks import suite as bench
from engine.errors import ConfigError
from engine.models.registry import make_config


def test_environment_records_machine_torch_and_threads() -> None:
    import torch

    env = bench.environment(threads=1)
    assert env["torch"] == torch.__version__
    assert env["threads"] == 1 and env["cores"] >= 1 and env["device"] == "cpu"
    assert env["cpu"] and env["machine"] is not None


def test_flops_per_token_and_mfu_against_the_measured_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models.registry import build_model

    cfg = make_config("transformer", 65, layers=4, heads=4, width=128, context=64)
    model = build_model("transformer", cfg)
    # tied head: the embedding is a matmul weight; the position table is only looked up
    assert bench.flops_per_token(model, cfg) == 6 * (cfg.num_params() - 64 * 128 - sum(
        p.numel() for p in model.parameters() if p.dim() < 2)) + 12 * 4 * 128 * 64
    lstm_cfg = make_config("lstm", 1000, layers=2, width=200, embed=200, tie_weights=False)
    lstm = build_model("lstm", lstm_cfg)
    lookup = 1000 * 200  # untied: the input embedding is only looked up
    assert bench.flops_per_token(lstm, lstm_cfg) == 6 * (sum(p.numel() for p in lstm.parameters() if p.dim() >= 2) - lookup)
    monkeypatch.setattr(bench, "_CEILINGS", {})
    monkeypatch.setattr(bench, "matmul_ceiling", lambda dtype, device="cpu": {"bf16": 4e11, "fp32": 2e11}[dtype])
    achieved, util = bench.mfu(1e6, 1000.0, "bf16")
    assert achieved == pytest.approx(1e9) and util == pytest.approx(1e9 / 4e11)
    assert bench.mfu(1e6, 1000.0, "fp32")[1] == pytest.approx(1e9 / 2e11)


def test_matmul_ceiling_is_measured() -> None:
    import torch

    torch.set_num_threads(1)
    value = bench.matmul_ceiling("fp32", n=256, repeats=2)
    assert math.isfinite(value) and value > 1e8  # FLOP/s of a real product, not a constant
    rows = bench.bench_ceiling(threads=1)
    assert [r.name for r in rows] == ["bf16 matmul 2048^3", "fp32 matmul 2048^3"] and all(r.value > 0 for r in rows)


def test_train_suite_measures_each_arch_through_the_trainer(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question. " * 300, encoding="utf-8")
    rows = bench.bench_train(["transformer", "ngram"], steps=2, corpus=str(corpus), threads=1)
    by_name = {r.name: r for r in rows if r.name in ("transformer", "ngram", "transformer (fast defaults)")}
    assert set(by_name) == {"transformer", "ngram", "transformer (fast defaults)"}
    assert "batch 16x64" in by_name["transformer (fast defaults)"].note
    for r in by_name.values():
        assert r.unit == "tokens/s" and math.isfinite(r.value) and r.value > 0
    tr = by_name["transformer"]
    assert tr.extra["threads"] == 1 and tr.extra["flops_per_s"] > 0 and tr.extra["ms_per_step"] > 0


def test_time_to_target_stops_at_the_target(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabcabd" * 400, encoding="utf-8")
    settings = dict(bench.TRANSFORMER_FAST, model={"layers": 1, "heads": 2, "width": 32, "dropout": 0.0},
                    context=16, batch_size=8, steps=200, eval_every=10, eval_batches=2, threads=1)
    res = bench.time_to_target(settings, str(corpus), target=1.0)
    assert res["reached"], res["evals"]
    assert res["val_loss"] <= 1.0 and res["step"] == res["steps_run"] < 200  # stopped right there
    assert res["seconds"] <= res["wall_seconds"] <= res["total_seconds"]
    unreachable = bench.time_to_target(dict(settings, steps=10), str(corpus), target=0.0)
    assert not unreachable["reached"] and math.isnan(unreachable["seconds"]) and unreachable["steps_run"] == 10


def test_tokenizer_suite_covers_every_tokenizer(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("The cat sat on the mat; the dog sat on the log.\n" * 2000, encoding="utf-8")
    rows = bench.bench_tokenizers(megabytes=0.05, corpus=str(corpus))
    assert [r.name for r in rows] == ["char", "byte", "word", "bpe", "whitespace"]
    assert all(r.unit == "MB/s" and r.value > 0 for r in rows)


def test_unknown_suite_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark suite 'nope'"):
        bench.run_suites(["nope"])


def test_generate_reports_the_transformer_within_and_past_its_context_against_nanogpt_at_equal_threads() -> None:
    rows = bench.bench_generate(tokens=8, archs=("transformer",), threads=1, repeats=1)
    names = [r.name for r in rows]
    assert any("within the context (KV cache)" in n for n in names)
    assert any("past the context" in n and "recompute the window" in n for n in names)
    assert any(n.startswith("nanoGPT-style recompute") for n in names)
    *rates, ratio = rows[:5]
    assert all(r.unit == "tokens/s" and r.value > 0 for r in rates)
    past, nanogpt = rates[1].value, rates[3].value
    assert ratio.unit == "x" and ratio.value == pytest.approx(past / nanogpt) and "same threads" in ratio.note
    wide = rows[5:]  # seqplay generate's default (the window on the idle cores), when more than one
    assert len(wide) in (0, 3)
    if wide:
        assert "seqplay generate's default" in wide[0].note and wide[2].unit == "x"
        assert wide[2].value == pytest.approx(wide[0].value / wide[1].value)


def test_missing_script_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench, "REPO", tmp_path)  # no benchmarks/ folder here
    (row,) = bench.bench_generate(tokens=5)
    assert row.note.startswith("skipped") and math.isnan(row.value)


def test_missing_corpus_is_one_line_error_before_anything_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No silent switch to a built-in corpus: every suite that needs one says which and how to give it."""
    monkeypatch.setattr(bench, "SHAKESPEARE", tmp_path / "nowhere.txt")
    monkeypatch.setattr(bench, "WIKITEXT", tmp_path / "nowhere")
    ran = []
    monkeypatch.setitem(bench.RUNNERS, "ceiling", lambda **kw: ran.append("ceiling") or [])
    for suites, option in ((["ceiling", "target"], "--corpus"), (["ceiling", "train"], "--corpus"),
                           (["ceiling", "wordlm"], "--word-corpus"), (["tokenizers"], "--corpus")):
        with pytest.raises(ConfigError, match=f"no corpus: .* pass {option}"):
            bench.run_suites(suites)
    assert ran == []  # refused before the first suite ran
    with pytest.raises(ConfigError, match="--word-corpus .* is not a split folder"):
        bench.bench_wordlm(corpus=str(Path(__file__)))
    with pytest.raises(ConfigError, match="--corpus .*missing.txt"):
        bench.bench_train(corpus=str(tmp_path / "missing.txt"))


def test_cli_missing_corpus_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = dict(__import__("os").environ, SEQPLAY_SHARED=str(tmp_path))
    res = subprocess.run([sys.executable, "-m", "seqplay", "bench", "target"], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parents[1], timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: no corpus:")


def test_cli_writes_json_with_environment(tmp_path: Path) -> None:
    from seqplay.cli import cli

    out, corpus = tmp_path / "b.json", tmp_path / "c.txt"
    corpus.write_text("one two three, four five six.\n" * 500, encoding="utf-8")
    result = CliRunner().invoke(cli, ["bench", "tokenizers", "--corpus", str(corpus), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["environment"]["threads"] == 1 and data["environment"]["torch"]
    assert {r["suite"] for r in data["rows"]} == {"tokenizers"}
    assert "MB/s" in result.output


def test_target_without_baseline_reports_no_ratio(tmp_path: Path) -> None:
    """Without --baseline there is nothing in the same run to divide by: no ratio row at all."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabcabd" * 400, encoding="utf-8")
    rows = bench.bench_target(corpus=str(corpus), target=1.5, threads=1, precision="fp32",
                              model={"layers": 1, "heads": 2, "width": 32, "dropout": 0.0}, steps=60)
    assert [r.unit for r in rows] == ["s"] and rows[0].name.startswith("fast defaults to val 1.5")
    assert rows[0].extra["evals"] and all(e[0] % bench.TARGET_EVAL_EVERY == 0 or e[0] == 60 for e in rows[0].extra["evals"])


def test_wordlm_suite_on_a_split_folder(tmp_path: Path) -> None:
    """fp32 and default-precision rows, the word_language_model loop named as a re-implementation,
    speed-ups from rows of the same run, and the full- vs adaptive-softmax rows after equal time."""
    d = tmp_path / "wiki"
    d.mkdir()
    words = [f"w{i}" for i in range(120)]
    for name, n in (("train.txt", 400), ("valid.txt", 40), ("test.txt", 40)):
        (d / name).write_text("".join(" " + " ".join(words[(i * 7 + j) % 120] for j in range(12)) + " \n" for i in range(n)),
                              encoding="utf-8")
    rows = bench.bench_wordlm(archs=("lstm",), steps=1, threads=1, corpus=str(d), seconds=0.5)
    names = [r.name for r in rows]
    assert names[:5] == ["lstm (seqplay, fp32)", f"lstm (seqplay, {names[1][15:-1]})",
                         "lstm word_language_model loop (re-implemented here, fp32)", "lstm speed-up at fp32",
                         "lstm speed-up, default precision"]
    assert rows[3].value == pytest.approx(rows[0].value / rows[2].value)
    full, adaptive = rows[5], rows[6]
    assert "softmax output" in full.name and "adaptive output" in adaptive.name
    assert full.unit == adaptive.unit == "ppl" and all(r.value > 1 and r.extra["tokens_per_s"] > 0 for r in (full, adaptive))
    assert adaptive.extra["params"] < full.extra["params"]
