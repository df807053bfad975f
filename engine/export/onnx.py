"""Export a run's language model to ONNX (``torch.onnx.export``) and check it with onnxruntime.

The graph's interface, by architecture:

    transformer        input_ids (B, T) int64 -> logits (B, T, V)            T <= the model's context
    rnn, gru, lstm     input_ids (B, T), h (L, B, H) [, c (L, B, H)] -> logits, h_out [, c_out]
    ugrnn              as above with T = 1 (its time loop is unrolled at export: one token per call)

The recurrent graphs carry their state in and out, so a caller generates token by token as seqplay
does. After writing ``model.onnx`` the export runs it with onnxruntime on a probe input and compares
the logits with torch's (``max_abs_diff`` in ``export.json``); a difference above ``TOLERANCE`` is an
error, not a file left behind silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from engine.errors import ExportError

TOLERANCE = 1e-4
OPSET = 18
ARCHS = ("transformer", "rnn", "gru", "lstm", "ugrnn")


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; pip install 'seqplay[{extra}]'") from None


def _graph(model: Any) -> Any:
    """The module torch.onnx traces: plain tensors in and out (no loss, state as separate tensors)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, *state: torch.Tensor):
            if self.inner.recurrent:
                logits, _, new_state = self.inner(input_ids, state=tuple(state))
                return (logits, *new_state)
            return self.inner(input_ids)[0]

    return Graph(model).eval()


def probe_inputs(model: Any, batch: int = 2, length: int | None = None, seed: int = 0) -> tuple[Any, ...]:
    """A deterministic example input (and zero state for recurrent models)."""
    import torch

    vocab = int(model.config.vocab_size)
    if length is None:
        length = 1 if model.arch == "ugrnn" else min(8, int(getattr(model, "max_context", None) or 8))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    if not model.recurrent:
        return (ids,)
    state = model.init_state(batch)
    return (ids, *(torch.randn(s.shape, generator=g) * 0.5 for s in state))


def names(model: Any) -> tuple[list[str], list[str]]:
    if not model.recurrent:
        return ["input_ids"], ["logits"]
    st = ["h", "c"][: model.n_state]
    return ["input_ids", *st], ["logits", *[f"{s}_out" for s in st]]


def torch_outputs(model: Any, inputs: tuple[Any, ...]) -> list[Any]:
    import torch

    with torch.no_grad():
        out = _graph(model)(*inputs)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def run_onnx(path: str | Path, model: Any, inputs: tuple[Any, ...]) -> list[Any]:
    """The ONNX graph's outputs for ``inputs`` under onnxruntime (CPU)."""
    ort = _need("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    in_names, _ = names(model)
    return session.run(None, {n: t.numpy() for n, t in zip(in_names, inputs)})


def export_onnx(loaded: Any, out_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir/model.onnx`` (+ ``tokenizer.json``, ``export.json``) for a loaded run and check it
    with onnxruntime; returns the export.json summary."""
    import numpy as np
    import torch

    _need("onnx", "onnx")
    _need("onnxscript", "onnx")
    model, meta = loaded.model, loaded.meta
    arch = meta.get("arch", getattr(model, "arch", "?"))
    if arch not in ARCHS:
        raise ExportError(f"ONNX export covers the language models {', '.join(ARCHS)}; {arch} is not one of them")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    inputs = probe_inputs(model)
    in_names, out_names = names(model)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=int(model.max_context or 1 << 16))
    ids_dims = {0: batch} if arch == "ugrnn" else {0: batch, 1: seq}
    dims = (ids_dims, tuple({1: batch} for _ in in_names[1:])) if model.recurrent else (ids_dims,)  # (input_ids, *state)
    path = out / "model.onnx"
    t0 = time.perf_counter()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_graph(model), inputs, str(path), dynamo=True, input_names=in_names, output_names=out_names,
                              dynamic_shapes=dims, opset_version=OPSET, external_data=False, verbose=False)
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds; the user gets one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ExportError(f"torch.onnx.export failed for {arch} ({type(err).__name__}: {first}); report it with the run's config") from None
    finally:
        quiet.setLevel(level)
    seconds = time.perf_counter() - t0
    check = probe_inputs(model, batch=3, length=None if arch == "ugrnn" else min(5, int(model.max_context or 5)), seed=1)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(run_onnx(path, model, check), torch_outputs(model, check)))
    if not diff <= TOLERANCE:
        raise ExportError(f"the ONNX graph's outputs differ from torch's by {diff:.2e} (> {TOLERANCE}); not usable")
    loaded.tokenizer.save(out / "tokenizer.json")
    summary = {
        "format": "onnx", "arch": arch, "opset": OPSET, "inputs": in_names, "outputs": out_names,
        "step": meta.get("step"), "source_checkpoint": str(loaded.path), "vocab_size": int(model.config.vocab_size),
        "context": getattr(model, "max_context", None), "max_abs_diff": diff, "export_seconds": round(seconds, 3),
        "tokens_per_call": 1 if arch == "ugrnn" else None,
    }
    (out / "export.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
