"""The sampler lab's data: at one generated position, the distribution before and after every stage.

``stage_view(model, tokenizer, prompt, settings, step)`` generates ``step`` tokens with ``settings`` (same
seed, same random stream as ``seqplay generate``), then returns, for the token at position ``step``, one
entry per active stage: the top tokens before and after it, the ids it removed and those it made more
likely, how many survive, and the entropy after -- plain data the app draws as bars. Tracing does not
change the generation: XTC's coin is restored, so the real draw sees the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.generation.processors import SamplingSettings
from engine.generation.streaming import Generation


def trace_next(gen: Generation, top: int = 10) -> dict[str, Any]:
    """Stage-by-stage view of the next token of a generation in progress (nothing is consumed)."""
    chooser = gen.chooser
    pipeline = chooser.pipeline
    xtc_state = pipeline.xtc_generator.get_state() if pipeline.xtc_generator is not None else None
    mirostat_logp = chooser.history.mirostat_logp
    with torch.inference_mode():
        logits = gen._ready_logits().float()
        stages = pipeline.trace(logits, chooser.history)
    if xtc_state is not None:
        pipeline.xtc_generator.set_state(xtc_state)  # type: ignore[union-attr]
    chooser.history.mirostat_logp = mirostat_logp
    raw = logits.softmax(-1)
    final = stages[-1].after if stages else raw
    k = min(top, raw.numel())
    values, ids = torch.topk(final, k)
    return {
        "position": len(gen.generated),
        "stages": [s.summary(top, gen.token_text) for s in stages],
        "final": [{"id": i, "text": gen.token_text(i), "p": v} for i, v in zip(ids.tolist(), values.tolist()) if v > 0],
        "order": pipeline.names,
    }


def stage_view(model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
               step: int = 0, top: int = 10) -> dict[str, Any]:
    """Generate ``step`` tokens, then the stage-by-stage view of token ``step`` (see ``trace_next``)."""
    settings = settings or SamplingSettings()
    gen = Generation(model, tokenizer, prompt, settings.replace(max_tokens=max(step + 1, settings.max_tokens)))
    for _ in range(step):
        if gen.done:
            break
        gen.next()
    view = trace_next(gen, top)
    view["text"] = gen.text
    return view
