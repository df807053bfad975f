"""Attention maps: where each position looks.

Self-attention (decoder-only Transformer), per layer l and head h:
    A^{l,h} = softmax(Q K^T / sqrt(d_k) + M),  M_{ij} = -inf for j > i (causal)
so every row is a probability distribution over the positions at or before it. The model computes
the weights explicitly when ``capture_attention`` is set and keeps them in ``last_attention``
(one (B, heads, T, T) tensor per layer).

Seq2seq cross-attention: alpha_{t,i} = softmax_i(score(s_{t-1}, h_bar_i)), the alignment of target
step t with source position i, returned by the model's forward as ``attn``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.data.pairs import teacher_forcing
from engine.errors import ConfigError
from engine.insight.common import encode_text, model_device, token_strings


def attention_maps(model: Any, tokenizer: Any, prompt: str, digits: int = 4) -> dict[str, Any]:
    """Self-attention of a Transformer over ``prompt`` (its last ``max_context`` tokens):
    ``layers[l][h][i][j]`` = weight of query position i on key position j."""
    if not hasattr(model, "last_attention"):
        raise ConfigError(f"a {getattr(model, 'arch', 'model')} has no self-attention; pick a Transformer run")
    ids = encode_text(tokenizer, prompt)
    limit = getattr(model, "max_context", None)
    if limit is not None:
        ids = ids[-limit:]
    model.eval()
    previous = model.capture_attention
    model.capture_attention = True
    try:
        with torch.no_grad():
            model(torch.as_tensor(ids, device=model_device(model))[None])
        maps = [w[0].double().cpu().numpy() for w in model.last_attention]
    finally:
        model.capture_attention = previous
    return {
        "analysis": "attention",
        "kind": "self",
        "tokens": token_strings(tokenizer, ids),
        "layers": [np.round(m, digits).tolist() for m in maps],
    }


def check_layer_head(data: dict[str, Any], layer: int | None, head: int | None) -> None:
    """Refuse a layer or head the maps do not have (negative counts from the end), naming the valid range."""
    n = len(data["layers"])
    if layer is not None and not -n <= layer < n:
        raise ConfigError(f"layer {layer} does not exist; this model has layers 0..{n - 1} (or -{n}..-1 from the end)")
    heads = min((len(h) for h in data["layers"]), default=0)
    if head is not None and not -heads <= head < heads:
        raise ConfigError(f"head {head} does not exist; this model has heads 0..{heads - 1} (or -{heads}..-1 from the end)")


def cross_attention(model: Any, tokenizer: Any, source: str, target: str, digits: int = 4) -> dict[str, Any]:
    """Seq2seq alignment for a (source, target) pair: ``layers[0][0][t][i]`` = weight on source position
    i of the decoder step that outputs target token t (teacher-forced on ``target``; last row: <eos>)."""
    if getattr(model, "task", "") != "seq2seq":
        raise ConfigError("cross-attention needs a seq2seq run; train one with --arch seq2seq")
    src = encode_text(tokenizer, source)
    tgt = encode_text(tokenizer, target)
    bos = getattr(model, "bos_id", None)
    eos_row = bos is not None
    tgt_in = teacher_forcing(tgt, bos, model.eos_id)[0] if eos_row else tgt  # the model's convention: [bos] + y
    model.eval()
    device = model_device(model)
    with torch.no_grad():
        out = model(torch.as_tensor(src, device=device)[None], torch.as_tensor(tgt_in, device=device)[None])
    attn = out[2]
    if attn is None:
        raise ConfigError("this seq2seq model has no attention (attention=none); train one with --attention additive")
    weights = attn[0].double().cpu().numpy()  # (T_tgt, T_src)
    return {
        "analysis": "attention",
        "kind": "cross",
        "tokens": token_strings(tokenizer, src),
        "query_tokens": token_strings(tokenizer, tgt) + (["<eos>"] if eos_row else []),
        "layers": [[np.round(weights, digits).tolist()]],
    }
