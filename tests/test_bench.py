"""The benchmark suite: figures are measured (positive, finite), carry the environment, and land in
JSON; suites that need a missing corpus or script say so instead of failing. No timing assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import bench
from engine.errors import ConfigError
from engine.models.registry import make_config


def test_environment_records_machine_torch_and_threads() -> None:
    import torch

    env = bench.environment(threads=1)
    assert env["torch"] == torch.__version__
    assert env["threads"] == 1 and env["cores"] >= 1 and env["device"] == "cpu"
    assert env["cpu"] and env["machine"] is not None


def test_transformer_flops_and_mfu() -> None:
    cfg = make_config("transformer", 65, layers=4, heads=4, width=128, context=64)
    per_token = bench.transformer_flops_per_token(cfg)
    assert per_token == 6 * cfg.num_params() + 12 * 4 * 128 * 64
    achieved, util = bench.mfu(per_token, 1000.0, "cpu")
    assert achieved == pytest.approx(per_token * 1000.0) and util is None  # no published CPU peak


def test_train_suite_measures_each_arch_through_the_trainer(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question. " * 300, encoding="utf-8")
    rows = bench.bench_train(["transformer", "ngram"], steps=2, corpus=str(corpus), threads=1)
    by_name = {r.name: r for r in rows if r.name in ("transformer", "ngram")}
    assert set(by_name) == {"transformer", "ngram"}
    for r in by_name.values():
        assert r.unit == "tokens/s" and math.isfinite(r.value) and r.value > 0
    tr = by_name["transformer"]
    assert tr.extra["threads"] == 1 and tr.extra["flops_per_s"] > 0 and tr.extra["ms_per_step"] > 0


def test_time_to_target_stops_at_the_target(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabcabcabd" * 400, encoding="utf-8")
    settings = dict(bench.TARGET_PRESET, model={"layers": 1, "heads": 2, "width": 32, "dropout": 0.0},
                    context=16, batch_size=8, steps=200, eval_every=10, eval_batches=2, threads=1)
    res = bench.time_to_target(settings, str(corpus), target=1.0)
    assert res["reached"], res["evals"]
    assert res["val_loss"] <= 1.0 and res["step"] == res["steps_run"] < 200  # stopped right there
    assert res["seconds"] <= res["total_seconds"]
    unreachable = bench.time_to_target(dict(settings, steps=10), str(corpus), target=0.0)
    assert not unreachable["reached"] and math.isnan(unreachable["seconds"]) and unreachable["steps_run"] == 10


def test_tokenizer_suite_covers_every_tokenizer(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("The cat sat on the mat; the dog sat on the log.\n" * 2000, encoding="utf-8")
    rows = bench.bench_tokenizers(megabytes=0.05, corpus=str(corpus))
    assert [r.name for r in rows] == ["char", "byte", "word", "bpe"]
    assert all(r.unit == "MB/s" and r.value > 0 for r in rows)


def test_unknown_suite_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark suite 'nope'"):
        bench.run_suites(["nope"])


def test_missing_script_and_corpus_are_reported_not_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench, "REPO", tmp_path)  # no benchmarks/ folder here
    monkeypatch.setattr(bench, "WIKITEXT", tmp_path / "nowhere")
    (row,) = bench.bench_generate(tokens=5)
    assert row.note.startswith("skipped") and math.isnan(row.value)
    (row,) = bench.bench_wordlm()
    assert row.note.startswith("skipped")


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
