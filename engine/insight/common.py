"""Small helpers shared by the torch analyses: tokens for display and character offsets."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import DataError

MAX_TOKENS = 4000  # longest text an interactive analysis walks through


def encode_text(tokenizer: Any, text: str, limit: int = MAX_TOKENS) -> np.ndarray:
    """Token ids of ``text`` (refusing empty text), cut to its first ``limit`` tokens."""
    if not text:
        raise DataError("the text is empty; pass some text (--text or --file)")
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if len(ids) == 0:
        raise DataError("the text encodes to no tokens; pass longer text")
    return ids[:limit]


def token_strings(tokenizer: Any, ids: np.ndarray) -> list[str]:
    """The text each token stands for (what gets coloured); joined they give the decoded text."""
    return [tokenizer.decode([int(i)]) for i in ids]


def model_device(model: Any) -> Any:
    """The device a model's tensors live on (an n-gram may hold buffers only)."""
    import torch

    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
