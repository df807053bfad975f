"""Surprisal: the model's loss at every token of a text, -log p(x_t | x_<t) in nats.

The text runs through ``forward`` in chunks that carry the state on (an RNN's hidden state, the
Transformer's sliding KV cache), so any length works in O(T). The first token has no prediction.
Two runs on the same text are compared per character (a token's loss spread evenly over the
characters it covers), which works even when their tokenizers differ: a negative difference
is where run A is less surprised than run B.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.insight.common import encode_text, model_device, token_strings

CHUNK = 256


def token_losses(model: Any, ids: np.ndarray) -> np.ndarray:
    """Loss in nats of predicting ids[t] from ids[:t], for t = 1 .. len(ids) - 1."""
    if getattr(model, "task", "lm") != "lm":
        raise ConfigError("surprisal needs a left-to-right language model run (not seq2seq or masked LM)")
    x = torch.as_tensor(np.asarray(ids[:-1], dtype=np.int64), device=model_device(model))[None]
    y = torch.as_tensor(np.asarray(ids[1:], dtype=np.int64), device=x.device)
    model.eval()
    state, outs = None, []
    with torch.no_grad():
        for start in range(0, x.shape[1], CHUNK):
            logits, _, state = model(x[:, start : start + CHUNK], state=state, use_cache=True)
            outs.append(logits[0].float())
        logits = torch.cat(outs, 0)
        return F.cross_entropy(logits, y, reduction="none").cpu().numpy().astype(np.float64)


def surprisal(model: Any, tokenizer: Any, text: str, label: str = "") -> dict[str, Any]:
    """Per-token losses over ``text`` plus their mean (nats/token), perplexity and bits per character."""
    ids = encode_text(tokenizer, text)
    if len(ids) < 2:
        raise ConfigError("the text is a single token; pass at least two tokens of text")
    losses = token_losses(model, ids)
    tokens = token_strings(tokenizer, ids)
    chars = sum(len(t) for t in tokens[1:])
    mean = float(losses.mean())
    return {
        "analysis": "surprisal",
        "run": label,
        "tokens": tokens,
        "losses": [None] + [round(float(v), 4) for v in losses],
        "mean_loss": mean,
        "perplexity": math.exp(mean),
        "bits_per_char": float(losses.sum() / max(chars, 1) / math.log(2)),
    }


def char_losses(report: dict[str, Any]) -> tuple[str, list[float | None]]:
    """(text, loss per character) from a surprisal report: each token's loss split evenly."""
    text, per_char = "", []
    for tok, loss in zip(report["tokens"], report["losses"]):
        text += tok
        share = None if loss is None or not tok else loss / len(tok)
        per_char.extend([share] * len(tok))
    return text, per_char


def surprisal_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per-character loss of run A minus run B on the same text (negative: A predicts better)."""
    text_a, la = char_losses(a)
    text_b, lb = char_losses(b)
    n = min(len(text_a), len(text_b))
    if text_a[:n] != text_b[:n]:
        raise ConfigError("the two runs decode the text differently (unknown characters?); use text both vocabularies cover")
    diff = [None if (x is None or y is None) else round(x - y, 4) for x, y in zip(la[:n], lb[:n])]
    known = [d for d in diff if d is not None]
    return {
        "analysis": "surprisal_diff",
        "run_a": a.get("run", "A"),
        "run_b": b.get("run", "B"),
        "chars": list(text_a[:n]),
        "diff": diff,
        "bits_per_char_a": a["bits_per_char"],
        "bits_per_char_b": b["bits_per_char"],
        "share_a_better": (sum(d < 0 for d in known) / len(known)) if known else 0.0,
    }
