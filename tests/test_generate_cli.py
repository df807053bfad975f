"""``seqplay generate``: streaming, --json, beams, seq2seq lines, MLM blanks and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.models.registry import build_model, make_config
from engine.runs.checkpoint import save_checkpoint
from tests.train_helpers import run_cli as run

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 10


def make_checkpoint(folder: Path, arch: str, extra_vocab: int = 0, **over) -> Path:
    """A checkpoint of an untrained tiny model, written the way the trainer writes one."""
    tok = build_tokenizer("char", TEXT)
    torch.manual_seed(0)
    cfg = make_config(arch, tok.vocab_size + extra_vocab, **over)
    model = build_model(arch, cfg)
    meta = {"arch": arch, "model_config": cfg.to_dict(), "tokenizer": tok.to_dict(),
            "train_config": {"arch": arch}, "step": 0}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(folder / "step-000000.json", tensors, meta)



@pytest.fixture(scope="module")
def gru_ckpt(tmp_path_factory):
    return str(make_checkpoint(tmp_path_factory.mktemp("gru"), "gru", width=32, embed=16, layers=1))


def test_stream_prints_prompt_and_continuation_reproducibly(capsys, gru_ckpt):
    code, out, err = run(capsys, "generate", gru_ckpt, "--prompt", "the ", "-n", "30", "--seed", "3")
    assert code == 0 and out.startswith("the ") and "max_tokens: 30 tokens" in err
    assert run(capsys, "generate", gru_ckpt, "--prompt", "the ", "-n", "30", "--seed", "3")[1] == out
    assert run(capsys, "generate", gru_ckpt, "--prompt", "the ", "-n", "30", "--seed", "4")[1] != out


def test_json_prints_one_object_per_token(capsys, gru_ckpt):
    code, out, _ = run(capsys, "generate", gru_ckpt, "-p", "the", "-n", "7", "--json", "--top-k", "3", "--seed", "0")
    lines = [json.loads(line) for line in out.splitlines()]
    tokens, done = lines[:-1], lines[-1]
    assert code == 0 and len(tokens) == 7 and done["event"] == "generation_done"
    for t in tokens:
        assert {"token", "text", "prob", "raw_prob", "top", "entropy"} <= set(t)
        assert t["prob"] >= t["raw_prob"]  # top-k renormalises the kept mass
        # the 3 kept alternatives, then 2 that top-k removed (processed p 0, raw p kept)
        assert [a["prob"] > 0 for a in t["top"]] == [True] * 3 + [False] * 2
        assert all(a["raw_prob"] > 0 for a in t["top"])
    assert done["text"] == "".join(t["text"] for t in tokens)


def test_beam_search_prints_the_best_hypothesis(capsys, gru_ckpt):
    code, out, err = run(capsys, "generate", gru_ckpt, "-p", "the", "-n", "8", "--beams", "3")
    assert code == 0 and out.startswith("the") and "best of 3 beams" in err


def test_errors_are_one_line(capsys, gru_ckpt, tmp_path):
    code, out, err = run(capsys, "generate", str(tmp_path / "missing"), "-p", "x")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "generate", str(bad))
    assert code == 2 and "corrupt" in err and err.count("\n") == 1
    tensors = Path(gru_ckpt).with_suffix(".safetensors")
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "step-000000.json").write_text(Path(gru_ckpt).read_text())
    (broken / tensors.name).write_bytes(tensors.read_bytes()[:100])
    code, _, err = run(capsys, "generate", str(broken / "step-000000.json"))
    assert code == 2 and err.startswith("error: ")
    code, _, err = run(capsys, "generate", gru_ckpt, "--top-p", "0")
    assert code == 2 and "top-p" in err


def test_seq2seq_maps_each_line(capsys, tmp_path):
    ckpt = make_checkpoint(tmp_path, "seq2seq", extra_vocab=3, width=32, embed=16, context=12)
    code, out, _ = run(capsys, "generate", str(ckpt), "-p", "the cat\nthe dog\nmat", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["input"] for r in rows] == ["the cat", "the dog", "mat"]
    assert all(len(r["ids"]) <= 12 for r in rows)
    code, out, _ = run(capsys, "generate", str(ckpt), "-p", "the cat\nthe dog", "--beams", "2")
    assert code == 0 and len(out.split("\n")) == 3


def test_mlm_fills_the_blanks(capsys, tmp_path):
    ckpt = make_checkpoint(tmp_path, "mlm", extra_vocab=1, width=32, heads=2, layers=1, context=32)
    code, out, _ = run(capsys, "generate", str(ckpt), "-p", "the _at sat on the m_t")
    assert code == 0
    filled = out.rstrip("\n")
    assert len(filled) == len("the cat sat on the mat") and "_" not in filled
    assert filled[:4] == "the " and filled[5:20] == "at sat on the m"
    code, _, err = run(capsys, "generate", str(ckpt), "-p", "no blanks")
    assert code == 2 and "blank" in err
