"""Streaming generation speed: tokens/s of ``engine.generation.generate.Generation`` for every language model at
its default size, and the Transformer's KV cache against nanoGPT-style recomputation.

    python benchmarks/generation_speed.py [--tokens 500] [--threads 1] [--json]

Models are untrained (speed does not depend on the weights); the tokenizer is the character
vocabulary of tinyshakespeare when present (else a built-in string). Each figure is the best of
``--repeats`` runs of ``--tokens`` new tokens after a 6-character prompt, sampling at temperature 1
(the full per-token path: raw and processed distribution, top-5 alternatives, entropy, text delta).

The baseline ("recompute") is nanoGPT's ``generate``: crop to the last ``context`` tokens, run the
whole window, sample from the last position -- measured at 1 and 2 threads, the faster one counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.tokenizers import build_tokenizer  # noqa: E402
from engine.generation.generate import Generation  # noqa: E402
from engine.generation.processors import SamplingSettings  # noqa: E402
from engine.models.registry import build_model, make_config  # noqa: E402

CORPUS = Path("/work/shared/corpora/tinyshakespeare.txt")
ARCHS = ["ngram", "mlp", "rnn", "ugrnn", "gru", "lstm", "transformer"]


def corpus_text() -> str:
    if CORPUS.exists():
        return CORPUS.read_text(encoding="utf-8")[:300_000]
    return "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 2000


def best_rate(fn, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        n, seconds = fn()
        rates.append(n / seconds)
    return max(rates)


def stream_rate(model, tok, tokens: int, window: str = "slide") -> tuple[int, float]:
    gen = Generation(model, tok, "ROMEO:", SamplingSettings(seed=0, max_tokens=tokens), window=window)
    t0 = time.perf_counter()
    for _ in gen:
        pass
    return len(gen.generated), time.perf_counter() - t0


def recompute_rate(model, tokens: int) -> tuple[int, float]:
    """nanoGPT's generate loop (crop, full forward, softmax, multinomial, cat)."""
    ctx = model.max_context
    idx = torch.randint(0, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(tokens):
            logits, _, _ = model(idx[:, -ctx:])
            probs = logits[:, -1].softmax(-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=gen)], 1)
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the streaming generator")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    text = corpus_text()
    tok = build_tokenizer("char", text)
    results: dict[str, float] = {}
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = build_model(arch, make_config(arch, tok.vocab_size))
        if arch == "ngram":
            model.fit(tok.encode(text).astype("int64"))
        model.eval()
        torch.set_num_threads(args.threads)
        stream_rate(model, tok, 20)  # warm-up
        results[arch] = best_rate(lambda m=model: stream_rate(m, tok, args.tokens), args.repeats)
        if arch == "transformer":
            results["transformer exact window"] = best_rate(lambda m=model: stream_rate(m, tok, args.tokens, "exact"), args.repeats)
            baseline = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                recompute_rate(model, 20)
                baseline[threads] = best_rate(lambda m=model: recompute_rate(m, args.tokens), args.repeats)
                results[f"transformer recompute ({threads} thread{'s' if threads > 1 else ''})"] = baseline[threads]
            results["kv-cache speed-up over best recompute"] = results["transformer"] / max(baseline.values())
        if not args.json:
            print(f"{arch:12s} {results[arch]:9,.0f} tokens/s", flush=True)
    if args.json:
        print(json.dumps({"tokens": args.tokens, "threads": args.threads, "results": results}, indent=1))
        return
    for name, value in results.items():
        if name.startswith("transformer ") or name.startswith("kv"):
            unit = "x" if name.startswith("kv") else " tokens/s"
            print(f"{name:40s} {value:9,.2f}{unit}" if unit == "x" else f"{name:40s} {value:9,.0f}{unit}")


if __name__ == "__main__":
    main()
