"""Export to the ecosystem: a GPT-2 folder transformers loads as is, and ONNX graphs run by onnxruntime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.errors import ExportError
from engine.models.registry import build_model, make_config
from engine.runs.checkpoint import load_model, save_checkpoint
from engine.training.trainer import Trainer
from tests.train_helpers import TEXT, Recorder, run_cli, tiny_config

transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")



def checkpoint(folder: Path, arch: str, tokenizer: str = "char", seed: int = 0, **over) -> Path:
    """An untrained model's checkpoint (weights randomised further so every tensor matters)."""
    tok = build_tokenizer(tokenizer, TEXT, 300 if tokenizer in ("bpe", "word") else None)
    torch.manual_seed(seed)
    cfg = make_config(arch, tok.vocab_size, **over)
    model = build_model(arch, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    meta = {"arch": arch, "model_config": cfg.to_dict(), "tokenizer": tok.to_dict(), "train_config": {"arch": arch}, "step": 0}
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(folder / "step-000000.json", {f"model.{k}": v for k, v in model.state_dict().items()}, meta)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cfg = tiny_config(tmp, steps=30, context=32, model=dict(layers=2, width=32, heads=2, dropout=0.1))
    return Trainer(cfg, Recorder()).run().run_dir


@pytest.fixture(scope="module")
def hf_dir(trained, tmp_path_factory):
    from engine.export.hf import export_hf

    out = tmp_path_factory.mktemp("hf") / "gpt2"
    export_hf(load_model(trained), out)
    return out


def test_gpt2_folder_gives_seqplay_logits(trained, hf_dir):
    loaded = load_model(trained)
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(hf_dir)).eval()
    ids = torch.from_numpy(loaded.tokenizer.encode("when the rain came the dog ran").astype(np.int64))[None]
    with torch.no_grad():
        ours, theirs = loaded.model(ids)[0], hf(ids).logits
    assert ours.shape == theirs.shape and float((ours - theirs).abs().max()) < 1e-4
    assert json.loads((hf_dir / "seqplay_export.json").read_text())["max_abs_diff"] < 1e-4


def test_pipeline_and_seqplay_give_the_same_greedy_text(capsys, trained, hf_dir):
    prompt = "the dog "
    code, out, _ = run_cli(capsys, "generate", str(trained), "-p", prompt, "-n", "20", "-t", "0")
    assert code == 0
    pipe = transformers.pipeline("text-generation", model=str(hf_dir), device="cpu")
    text = pipe(prompt, max_new_tokens=20, do_sample=False)[0]["generated_text"]
    assert text == out.rstrip("\n") and len(text) == len(prompt) + 20


@pytest.mark.parametrize("over", [dict(positions="sinusoidal"), dict(bias=False, tie_weights=False), dict(mlp_ratio=2, heads=4)])
def test_settings_gpt2_has_no_switch_for_export_exactly(tmp_path, over):
    from engine.export.hf import export_hf

    ckpt = checkpoint(tmp_path / "run" / "checkpoints", "transformer", **{**dict(layers=2, width=32, heads=2, context=24), **over})
    loaded = load_model(ckpt)
    export_hf(loaded, tmp_path / "out")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ids = torch.randint(0, loaded.model.config.vocab_size, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((loaded.model(ids)[0] - hf(ids).logits).abs().max()) < 1e-4


@pytest.mark.parametrize("kind", ["char", "word", "byte", "bpe"])
def test_exported_tokenizer_encodes_and_decodes_as_seqplay(kind):
    from engine.export.hf import hf_tokenizer

    tok = build_tokenizer(kind, TEXT, 300 if kind in ("bpe", "word") else None)
    hf = hf_tokenizer(tok)
    for text in ("the cat sat on the mat.\n", "  when  the rain,\ncame; ZEBRA é!", ""):
        ours = [int(i) for i in tok.encode(text)]
        assert hf(text)["input_ids"] == ours, text
        assert hf.decode(ours) == tok.decode(ours)


def test_what_gpt2_cannot_express_is_refused_in_one_line(capsys, tmp_path):
    ckpt = checkpoint(tmp_path / "lstm" / "checkpoints", "lstm", layers=1, width=16, embed=8)
    code, out, err = run_cli(capsys, "export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: ") and "GPT-2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_export_refuses_to_overwrite_a_folder_that_is_not_an_export(capsys, trained, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "export", str(trained), "--out", str(tmp_path / "mine"))
    assert code == 2 and "not an earlier seqplay hf export" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_extra_is_one_line(monkeypatch, trained, tmp_path):
    from engine.export.hf import export_hf

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ExportError, match=r"pip install 'seqplay\[hf\]'"):
        export_hf(load_model(trained), tmp_path / "out")


@pytest.mark.parametrize("arch", ["transformer", "lstm", pytest.param("gru", marks=pytest.mark.slow), "ugrnn"])
def test_onnx_logits_equal_torch(tmp_path, arch):
    from engine.export.onnx import export_onnx, names, run_onnx, torch_outputs

    over = dict(layers=2, width=16, heads=2, context=12) if arch == "transformer" else dict(layers=2, width=16, embed=8)
    loaded = load_model(checkpoint(tmp_path / "run" / "checkpoints", arch, **over))
    summary = export_onnx(loaded, tmp_path / "onnx")
    assert summary["max_abs_diff"] < 1e-4 and (tmp_path / "onnx" / "model.onnx").is_file()
    model = loaded.model
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    if not model.recurrent:  # another batch size and length than the export saw
        x = (torch.randint(0, V, (4, 12), generator=g),)
        assert np.abs(run_onnx(tmp_path / "onnx" / "model.onnx", model, x)[0] - torch_outputs(model, x)[0]).max() < 1e-4
        return
    # recurrent: feeding a sequence token by token through the graph, state carried, gives torch's logits
    ids = torch.randint(0, V, (2, 6), generator=g)
    state = tuple(model.init_state(2))
    got = []
    for t in range(ids.size(1)):
        outs = run_onnx(tmp_path / "onnx" / "model.onnx", model, (ids[:, t : t + 1], *state))
        got.append(outs[0])
        state = tuple(torch.from_numpy(s) for s in outs[1:])
    with torch.no_grad():
        want = model(ids)[0].numpy()
    assert np.abs(np.concatenate(got, 1) - want).max() < 1e-4
    assert len(names(model)[0]) == 1 + model.n_state


def test_onnx_refuses_models_it_does_not_cover(capsys, tmp_path):
    ckpt = checkpoint(tmp_path / "s2s" / "checkpoints", "mlp", context=4, embed=8, width=16)
    code, _, err = run_cli(capsys, "export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: ONNX export covers")


@pytest.mark.parametrize("kind", ["word", "byte", "bpe"])
def test_pipeline_greedy_text_for_every_tokenizer(capsys, tmp_path, kind):
    ckpt = checkpoint(tmp_path / "run" / "checkpoints", "transformer", tokenizer=kind, layers=1, width=32, heads=2, context=32)
    code, out, _ = run_cli(capsys, "export", str(ckpt), "--out", str(tmp_path / "hf"), "-p", "the cat")
    assert code == 0, out
    code, ours, _ = run_cli(capsys, "generate", str(ckpt), "-p", "the cat", "-n", "12", "-t", "0")
    pipe = transformers.pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    assert pipe("the cat", max_new_tokens=12, do_sample=False)[0]["generated_text"] == ours.rstrip("\n")
