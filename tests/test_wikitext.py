"""Word-level LMs the way the field measures them: a split folder, the whitespace protocol, the
test perplexity at the end of a run."""

from __future__ import annotations

import math

import pytest

from engine.training.trainer import Trainer
from engine.worker import protocol as P
from tests.train_helpers import Recorder, tiny_config

LINES = [" the cat sat on the mat . ", " the dog ate the bone . ", " a bird sang in the tree . ", " = = heading = = "]


def _folder(tmp_path):
    d = tmp_path / "wiki"
    d.mkdir()
    (d / "train.txt").write_text("\n".join(LINES[i % 4] for i in range(600)) + "\n", encoding="utf-8")
    (d / "valid.txt").write_text("\n".join(LINES[(i + 1) % 4] for i in range(60)) + "\n the zebra sat . \n", encoding="utf-8")
    (d / "test.txt").write_text("\n".join(LINES[(i + 2) % 4] for i in range(80)) + "\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_run_on_a_split_folder_reports_test_perplexity(tmp_path, arch):
    d = _folder(tmp_path)
    rec = Recorder()
    cfg = tiny_config(tmp_path, arch, source=str(d), tokenizer="whitespace", steps=30, eval_every=15, context=8)
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "done" and fin.test_loss is not None and math.isfinite(fin.test_loss)
    logs = [e.text for e in rec.events if isinstance(e, P.LogLine)]
    assert any(t.startswith("validation: valid.txt, test: test.txt; <unk> is ") for t in logs)
    test_line = next(t for t in logs if t.startswith("test: loss"))
    assert f"{fin.test_loss:.4f}" in test_line and f"ppl {math.exp(fin.test_loss):.2f}" in test_line
    # the test split is scored whole and is not a validation result
    assert all(e.val_loss != fin.test_loss for e in rec.events if isinstance(e, P.EvalMetrics))
    assert fin.test_loss < math.log(cfg_vocab(rec))  # it learned something the test text shares


def cfg_vocab(rec: Recorder) -> int:
    return next(e.vocab_size for e in rec.events if isinstance(e, P.Started))


def test_file_source_has_no_test_split(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=4, eval_every=4), Recorder()).run()
    assert fin.test_loss is None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wikitext2_lstm_run_reports_validation_and_test_perplexity(tmp_path, wikitext2):
    """The real corpus through a path option: a short 2 x 200 LSTM run on the WikiText-2 folder with
    the whitespace protocol logs the split rule and <unk> share and ends with a test perplexity far
    below the uniform 33,278."""
    from engine.training.config import TrainConfig

    rec = Recorder()
    cfg = TrainConfig(source=str(wikitext2), arch="lstm", tokenizer="whitespace", context=35, batch_size=20,
                      model={"layers": 2, "width": 200, "embed": 200, "dropout": 0.2}, steps=30, eval_every=30,
                      eval_batches=2, sample_every=0, runs_dir=str(tmp_path / "runs"), threads=1)
    fin = Trainer(cfg, rec).run()
    started = next(e for e in rec.events if isinstance(e, P.Started))
    assert started.vocab_size == 33_278 and started.train_tokens == 2_088_628 and started.val_tokens == 217_646
    logs = [e.text for e in rec.events if isinstance(e, P.LogLine)]
    assert any("<unk> is 5.4% of the validation tokens" in t for t in logs)
    assert any(t.startswith("test: loss") and "245,569 test tokens" in t for t in logs)
    assert fin.test_loss is not None and math.exp(fin.test_loss) < 2_000


def test_cli_shows_the_unk_share_beside_bits_per_char(tmp_path):
    from click.testing import CliRunner

    from seqplay.cli import cli

    d = _folder(tmp_path)
    res = CliRunner().invoke(cli, ["train", str(d), "--tokenizer", "whitespace", "--arch", "lstm", "--steps", "4",
                                   "--threads", "1", "--precision", "fp32", "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())  # the progress console wraps long lines
    eval_line = flat[flat.index("step 4: val loss"):]
    assert "bits/char (<unk> 0.2% of validation tokens: a lower bound)" in eval_line  # "zebra": 1 of 425 tokens
    assert "test: loss" in flat
