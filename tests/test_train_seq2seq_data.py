"""Seq2seq data that used to blow up: empty sources (attention over all padding) and empty targets."""

from __future__ import annotations

import math

import torch

from engine.models.registry import build_model, make_config
from engine.training.config import TrainConfig
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder


def test_attention_over_an_all_padding_source_is_zero_not_nan():
    for attention in ("additive", "dot", "bilinear"):
        torch.manual_seed(0)
        model = build_model("seq2seq", make_config("seq2seq", 12, width=16, embed=8, attention=attention))
        pad, bos, eos = model.special_ids(12)
        src = torch.tensor([[pad, pad, pad], [1, 2, pad]])
        tgt_in = torch.tensor([[bos, 3], [bos, 4]])
        targets = torch.tensor([[3, eos], [4, eos]])
        logits, loss, maps = model(src, tgt_in, targets)
        assert torch.isfinite(logits).all() and math.isfinite(loss.item()), attention
        assert torch.equal(maps[0], torch.zeros_like(maps[0]))  # nothing to attend to
        assert torch.allclose(maps[1].sum(-1), torch.ones(2)) and (maps[1][:, 2] == 0).all()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), attention


def test_a_file_with_an_empty_source_line_trains_without_nan(tmp_path):
    lines = [f"{w}\t{w[::-1]}" for w in ("abc", "bca", "cab", "acb", "bac", "cba") * 10]
    lines[3] = "\tempty"  # an empty source (line 4)
    lines[7] = "abc\t"  # an empty target (line 8)
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = TrainConfig(source=str(path), arch="seq2seq", model=dict(width=16, embed=8, attention="additive"),
                      batch_size=60, steps=8, eval_every=4, sample_every=0, warmup=1, lr=3e-3, threads=1,
                      precision="fp32", runs_dir=str(tmp_path / "runs"))
    rec = Recorder()
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "done" and fin.step == 8, [e for e in rec.events if e.kind == "error"]
    assert all(math.isfinite(v) for v in rec.losses().values())
    assert all(math.isfinite(e.val_loss) for e in rec.of("eval"))
