"""The one interface every seqplay model shares, so one trainer and one sampler serve them all.

``SeqModel.forward(idx, targets=None, state=None, use_cache=False) -> (logits, loss, state)``:
``idx`` (B, T) int64, ``logits`` (B, T, V), ``loss`` the mean cross-entropy over targets != -100 (or
None), ``state`` what carries the sequence on (RNN hidden state, Transformer KV cache, the last tokens
of an MLP/n-gram window). Passing ``state`` back continues the sequence: generation costs O(1) per token.

Weights go to safetensors through ``save_weights``/``load_weights`` (or ``weights_for_save`` /
``load_weights_dict`` when the caller writes the file itself, e.g. together with optimizer tensors):
tied weights are written once and re-tied on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import CheckpointError


@dataclass
class StepTrace:
    """Everything the explicit cell-by-cell path computed, for introspection.

    ``hidden[l]`` (B, T, H) every hidden state of layer ``l``; ``cells[l]`` the LSTM cell states (empty
    list for other cells); ``gates[l][name]`` (B, T, H) each gate's activation (lstm: i, f, g, o;
    gru: r, z, n; ugrnn: R, G; rnn: none); ``logits`` (B, T, V); ``state`` the final state.
    """

    hidden: list[Tensor]
    cells: list[Tensor] = field(default_factory=list)
    gates: list[dict[str, Tensor]] = field(default_factory=list)
    logits: Tensor | None = None
    state: Any = None


def lm_loss(logits: Tensor, targets: Tensor | None) -> Tensor | None:
    """Mean cross-entropy over positions whose target is not -100 (None without targets)."""
    if targets is None:
        return None
    flat = logits.reshape(-1, logits.size(-1))
    if flat.dtype == torch.bfloat16:  # autocast: no float32 copy of the logits (engine/models/fused_ce.py)
        from engine.models.fused_ce import bf16_cross_entropy

        return bf16_cross_entropy(flat, targets.reshape(-1))
    return F.cross_entropy(flat.float(), targets.reshape(-1), ignore_index=-100)


def map_state(state: Any, fn) -> Any:
    """Apply ``fn`` to every tensor of a (nested tuple/list/dict/object-with-``map``) state."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple | list):
        return type(state)(map_state(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if hasattr(state, "map"):
        return state.map(fn)
    return state


class SeqModel(nn.Module):
    """Base class of every architecture. Subclasses set the class attributes and ``forward``."""

    arch: str = ""
    task: str = "lm"  # lm | seq2seq | mlm
    recurrent: bool = False  # the trainer carries state across batches (truncated BPTT)
    trainable: bool = True  # False for the n-gram (``fit`` counts instead)
    max_context: int | None = None  # longest window the model can see (None: unbounded)

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> Any:
        """The state at the start of a sequence (None means "from scratch" for every model)."""
        return None

    def detach_state(self, state: Any) -> Any:
        """Cut the graph behind a carried state (truncated BPTT)."""
        return map_state(state, lambda t: t.detach())

    def reset_state(self, state: Any, mask: Tensor) -> Any:
        """Zero the state of the batch rows where ``mask`` (B,) is True (a stream restarted).

        Recurrent states are (layers, B, H) tensors, so the batch is dimension 1."""
        if state is None:
            return None
        keep = (~mask.bool()).to(torch.float32)

        def zero(t: Tensor) -> Tensor:
            shape = [1] * t.dim()
            shape[1] = -1
            return t * keep.to(t.device, t.dtype).view(shape)

        return map_state(state, zero)

    def num_params(self) -> int:
        """Parameters counted once even when tied (equals ``config.num_params()``)."""
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------------
# safetensors helpers: tied weights share storage, which safetensors refuses to write twice.
# ---------------------------------------------------------------------------------------------------


def weights_for_save(model: nn.Module) -> dict[str, Tensor]:
    """The state dict with each shared tensor kept once (first name wins), contiguous, on CPU."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t.detach().to("cpu").contiguous()
    return out


def load_weights_dict(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Load tensors written by ``weights_for_save``; only names of tied aliases may be missing."""
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit this model ({str(err).splitlines()[0]}); "
                              "check that the config matches the weights") from None
    tied = _tied_aliases(model)
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint weights do not match the model (missing {missing[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}); check that the config matches the weights"
        )


def _tied_aliases(model: nn.Module) -> set[str]:
    sd = model.state_dict()
    kept = set(weights_for_save(model))
    return {k for k in sd if k not in kept}


def save_weights(model: nn.Module, path: str, metadata: dict[str, str] | None = None) -> None:
    """Write the model's weights to a safetensors file (tied weights once)."""
    from safetensors.torch import save_file

    save_file(weights_for_save(model), str(path), metadata=metadata)


def load_weights(model: nn.Module, path: str, device: torch.device | str = "cpu") -> None:
    """Read weights written by ``save_weights`` into ``model`` (never unpickles)."""
    from safetensors.torch import load_file

    load_weights_dict(model, load_file(str(path), device=str(device)))
