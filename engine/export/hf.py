"""Export a seqplay Transformer as a Hugging Face GPT-2 folder that ``transformers`` loads as it is.

seqplay's Transformer is GPT-2's architecture (pre-LayerNorm blocks, causal multi-head attention scaled
by 1/sqrt(d_k), an exact-GELU MLP of width ``mlp_ratio * width``, a final LayerNorm, eps 1e-5), so the
weights map one to one onto ``GPT2LMHeadModel``::

    tok.weight -> transformer.wte.weight        pos.weight -> transformer.wpe.weight
    blocks.i.ln1/ln2 -> transformer.h.i.ln_1/ln_2
    blocks.i.attn.qkv / proj -> h.i.attn.c_attn / c_proj    (GPT-2's Conv1D: weight transposed)
    blocks.i.mlp.0 / mlp.2 -> h.i.mlp.c_fc / c_proj         ln_f -> transformer.ln_f
    head.weight -> lm_head.weight (tie_word_embeddings = tie_weights)

Two settings GPT-2 has no switch for are written so that the exported model computes the same
function: ``positions = sinusoidal`` fills the learned position table ``wpe`` with the sinusoids, and
``bias = false`` writes zero biases (in transformers they then become ordinary trainable parameters).
What GPT-2 cannot express is refused in one line: another architecture or task, an activation or
config field this mapping does not know.

The tokenizer becomes a ``PreTrainedTokenizerFast``: char and word vocabularies as a ``tokenizers``
WordLevel model (a pre-tokenizer that splits exactly as seqplay does, a decoder that concatenates),
bytes as WordLevel over GPT-2's byte alphabet with the ByteLevel decoder, and BPE as it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engine.errors import ExportError

# TransformerConfig fields this mapping knows; a new field is refused until the mapping covers it.
KNOWN_FIELDS = {"vocab_size", "context", "layers", "heads", "width", "mlp_ratio", "dropout", "positions", "tie_weights", "bias"}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ExportError("transformers is not installed; pip install 'seqplay[hf]'") from None
    transformers.utils.logging.disable_progress_bar()
    return transformers


def check_expressible(meta: dict[str, Any]) -> None:
    """Refuse, in one line that says why, a model GPT-2's architecture cannot express."""
    arch = meta.get("arch")
    if arch != "transformer":
        raise ExportError(f"--format hf exports the decoder-only transformer as GPT-2; a {arch} model has no GPT-2 "
                          "form (use --format onnx for rnn, gru, lstm and ugrnn)")
    cfg = meta.get("model_config") or {}
    unknown = sorted(set(cfg) - KNOWN_FIELDS)
    if unknown:
        raise ExportError(f"transformer setting(s) {', '.join(unknown)} have no GPT-2 equivalent in this exporter; "
                          "export with --format onnx instead")
    if cfg.get("positions", "learned") not in ("learned", "sinusoidal"):
        raise ExportError(f"positions={cfg.get('positions')!r} cannot be written as GPT-2's position table")


def gpt2_config(cfg: dict[str, Any]) -> Any:
    transformers = _transformers()
    drop = float(cfg.get("dropout", 0.0))
    return transformers.GPT2Config(
        vocab_size=int(cfg["vocab_size"]), n_positions=int(cfg["context"]), n_embd=int(cfg["width"]),
        n_layer=int(cfg["layers"]), n_head=int(cfg["heads"]), n_inner=int(cfg["mlp_ratio"]) * int(cfg["width"]),
        activation_function="gelu", resid_pdrop=drop, embd_pdrop=drop, attn_pdrop=drop, layer_norm_epsilon=1e-5,
        tie_word_embeddings=bool(cfg.get("tie_weights", True)), bos_token_id=None, eos_token_id=None, pad_token_id=None,
        architectures=["GPT2LMHeadModel"],
    )


def gpt2_state_dict(model: Any) -> dict[str, Any]:
    """seqplay Transformer weights under GPT-2's names and layouts (zeros where seqplay has no bias)."""
    import torch

    c = model.config
    w = c.width
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    zeros = torch.zeros

    def bias(name: str, n: int) -> torch.Tensor:
        return sd.get(name, zeros(n))

    out = {"transformer.wte.weight": sd["tok.weight"]}
    if c.positions == "learned":
        out["transformer.wpe.weight"] = sd["pos.weight"]
    else:
        from engine.models.transformer import sinusoidal_positions

        out["transformer.wpe.weight"] = sinusoidal_positions(c.context, w)
    for i in range(c.layers):
        p, q = f"blocks.{i}.", f"transformer.h.{i}."
        for mine, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[q + theirs + ".weight"] = sd[p + mine + ".weight"]
            out[q + theirs + ".bias"] = bias(p + mine + ".bias", w)
        for mine, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.0", "mlp.c_fc"), ("mlp.2", "mlp.c_proj")):
            weight = sd[p + mine + ".weight"]  # nn.Linear (out, in) -> Conv1D (in, out)
            out[q + theirs + ".weight"] = weight.t().contiguous()
            out[q + theirs + ".bias"] = bias(p + mine + ".bias", weight.size(0))
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = bias("ln_f.bias", w)
    out["lm_head.weight"] = sd["head.weight"]
    return out


def hf_tokenizer(tok: Any) -> Any:
    """A ``PreTrainedTokenizerFast`` that encodes and decodes as the seqplay tokenizer ``tok`` does."""
    transformers = _transformers()
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    kind = tok.name
    unk = None
    if kind == "bpe":
        hf = HFTokenizer.from_str(tok.hf.to_str())
    elif kind == "char":
        vocab = {c: i for i, c in enumerate(tok.chars)}
        unk = "\ufffd" if "\ufffd" not in vocab else "<unk>"  # seqplay decodes <unk> as U+FFFD
        vocab[unk] = tok.unk_id
        hf = HFTokenizer(models.WordLevel(vocab, unk_token=unk))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
    elif kind == "word":
        from engine.data.tokenizers import WORD_PATTERN

        unk = "<unk>"
        hf = HFTokenizer(models.WordLevel({w: i for i, w in enumerate(tok.words)}, unk_token=unk))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN.pattern), behavior="isolated")
        hf.decoder = decoders.Fuse()
    elif kind == "byte":
        from engine.data.tokenizers import _byte_alphabet

        hf = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(_byte_alphabet())}, unk_token=_byte_alphabet()[0]))
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated"),
        ])
        hf.decoder = decoders.ByteLevel()
    else:
        raise ExportError(f"no transformers tokenizer for seqplay's {kind!r} tokenizer")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=hf, unk_token=unk, clean_up_tokenization_spaces=False,
                                                model_max_length=1 << 30)


def export_hf(loaded: Any, out_dir: str | Path, probe: str = "") -> dict[str, Any]:
    """Write a GPT-2 folder (config.json, model.safetensors, tokenizer files, seqplay_export.json) for a
    loaded run, then reload it with transformers and compare logits on ``probe`` (max_abs_diff)."""
    import torch

    check_expressible(loaded.meta)
    transformers = _transformers()
    t0 = time.perf_counter()
    model = loaded.model.to("cpu").eval()
    cfg = gpt2_config(model.config.to_dict())
    hf_model = transformers.GPT2LMHeadModel(cfg)
    result = hf_model.load_state_dict(gpt2_state_dict(model), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(".attn.bias") and not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or result.unexpected_keys:
        raise ExportError(f"the GPT-2 mapping left weights unset ({missing[:3]}) or unused ({result.unexpected_keys[:3]}); "
                          "this transformers version is not supported")
    if cfg.tie_word_embeddings:
        hf_model.tie_weights()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out))
    tokenizer = hf_tokenizer(loaded.tokenizer)
    tokenizer.save_pretrained(str(out))
    seconds = time.perf_counter() - t0

    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = [int(i) for i in loaded.tokenizer.encode(probe or "the ")][: model.config.context] or [0]
    x = torch.tensor([ids])
    with torch.no_grad():
        diff = float((reloaded(x).logits - model(x)[0]).abs().max())
    summary = {
        "format": "hf", "architecture": "GPT2LMHeadModel", "step": loaded.meta.get("step"),
        "source_checkpoint": str(loaded.path), "tokenizer": loaded.tokenizer.name,
        "positions": model.config.positions, "bias": model.config.bias, "max_abs_diff": diff,
        "export_seconds": round(seconds, 3), "transformers": transformers.__version__,
    }
    (out / "seqplay_export.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if not diff <= 1e-4:
        raise ExportError(f"the exported GPT-2 model's logits differ from seqplay's by {diff:.2e}; the export in {out} is not usable")
    return summary
