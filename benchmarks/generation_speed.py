"""Streaming generation speed: tokens/s of ``engine.generation.streaming.Generation`` and where each token's
time goes (model, processors, stream), for the Transformer's exact decoding within and past its context,
the approximate ``--window slide``, nanoGPT-style recomputation, and the other language models.

    python benchmarks/generation_speed.py [--tokens 500] [--threads 1] [--repeats 3] [--json]

Models are untrained (speed does not depend on the weights) at their default size (the Transformer:
4 layers, 4 heads, width 128, context 64, about 0.8M parameters); the tokenizer is the character
vocabulary of ``--corpus`` (default tinyshakespeare when present, else a built-in string). Each
generation samples at temperature 1 after a 6-character prompt with the full per-token path (raw and
processed distribution, top-5 alternatives, entropy, text delta).

Rows measured against each other are alternated A, B, A, B, ... in one sitting (``--repeats`` rounds)
and each reports its best round, so a load that drifts during the run hits both alike; ratios are
taken of those best rounds. On a shared machine quote the ratios, not the absolute rates.

The baseline ("recompute") is nanoGPT's ``GPT.generate`` loop: crop to the last ``context`` tokens, run
the whole window, softmax, multinomial, ``torch.cat``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.tokenizers import build_tokenizer  # noqa: E402
from engine.device import torch_threads  # noqa: E402
from engine.generation.settings import SamplingSettings  # noqa: E402
from engine.generation.streaming import Generation  # noqa: E402
from engine.models.native import status as native_status  # noqa: E402
from engine.models.registry import build_model, make_config  # noqa: E402

CORPUS = Path("/work/shared/corpora/tinyshakespeare.txt")
ARCHS = ["ngram", "mlp", "rnn", "ugrnn", "gru", "lstm", "transformer"]
PROMPT = "ROMEO:"


def corpus_text(path: Path | None = None) -> str:
    path = path or CORPUS
    if path.exists():
        return path.read_text(encoding="utf-8")[:300_000]
    return "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 2000


def best_rate(fn, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        n, seconds = fn()
        rates.append(n / seconds)
    return max(rates)


def timed_generation(model, tok, tokens: int, window: str = "exact", window_threads: int | None = None
                     ) -> tuple[int, float, dict[str, float]]:
    """(tokens, seconds, per-token split in ms) of one generation."""
    gen = Generation(model, tok, PROMPT, SamplingSettings(seed=0, max_tokens=tokens), window=window,
                     window_threads=window_threads)
    t0 = time.perf_counter()
    for _ in gen:
        pass
    seconds = time.perf_counter() - t0
    n = max(len(gen.generated), 1)
    split = {k.replace("_s", "_ms"): v * 1e3 / n for k, v in gen.timing.items()}
    return len(gen.generated), seconds, split


def stream_rate(model, tok, tokens: int, window: str = "exact") -> tuple[int, float]:
    n, seconds, _ = timed_generation(model, tok, tokens, window)
    return n, seconds


def recompute_rate(model, tokens: int, threads: int | None = None) -> tuple[int, float]:
    """nanoGPT's generate loop (crop, full forward, softmax, multinomial, cat), on ``threads`` (None: the
    current count)."""
    with torch_threads(threads):
        return _recompute_rate(model, tokens)


def _recompute_rate(model, tokens: int) -> tuple[int, float]:
    ctx = model.max_context
    idx = torch.randint(0, model.config.vocab_size, (1, len(PROMPT)), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(tokens):
            logits, _, _ = model(idx[:, -ctx:])
            probs = logits[:, -1].softmax(-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=gen)], 1)
    return tokens, time.perf_counter() - t0


def alternate(cases: dict[str, callable], repeats: int) -> dict[str, dict]:
    """Run every case once per round, rounds alternating; keep each case's best round."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            out = fn()
            n, seconds = out[0], out[1]
            rate = n / seconds
            if name not in best or rate > best[name]["tokens_per_s"]:
                best[name] = {"tokens_per_s": rate, "tokens": n, **(out[2] if len(out) > 2 else {})}
    return best


def transformer_rows(tok, tokens: int, threads: int, repeats: int, window_threads: int | None = None) -> dict[str, dict]:
    """The Transformer's rows, alternated. With ``window_threads`` (more than ``threads``) also the exact
    decoding as ``seqplay generate`` runs it by default (the window recompute on ``window_threads``) and
    nanoGPT's loop on as many threads, with their ratio."""
    torch.manual_seed(0)
    model = build_model("transformer", make_config("transformer", tok.vocab_size)).eval()
    within = model.max_context - len(PROMPT)  # stays inside the context: the KV cache all the way
    torch.set_num_threads(threads)
    timed_generation(model, tok, 20)  # warm-up
    recompute_rate(model, 20)
    cases = {
        f"transformer exact, {within} tokens within the context (KV cache)": lambda: timed_generation(model, tok, within),
        f"transformer exact, {tokens} tokens (past the context: recompute the window)":
            lambda: timed_generation(model, tok, tokens),
        f"transformer slide (approximate), {tokens} tokens": lambda: timed_generation(model, tok, tokens, "slide"),
        f"nanoGPT-style recompute, {tokens} tokens": lambda: recompute_rate(model, tokens),
    }
    wide = window_threads is not None and window_threads > threads
    if wide:
        cases[f"transformer exact, {tokens} tokens past the context, window on {window_threads} threads"] = \
            lambda: timed_generation(model, tok, tokens, window_threads=window_threads)
        cases[f"nanoGPT-style recompute, {tokens} tokens, {window_threads} threads"] = \
            lambda: recompute_rate(model, tokens, window_threads)
    rows = alternate(cases, repeats)
    names = list(cases)
    rows["exact past the context / nanoGPT recompute"] = {"ratio": rows[names[1]]["tokens_per_s"] / rows[names[3]]["tokens_per_s"]}
    rows["slide / exact past the context"] = {"ratio": rows[names[2]]["tokens_per_s"] / rows[names[1]]["tokens_per_s"]}
    if wide:
        rows[f"exact past the context / nanoGPT recompute, {window_threads} threads"] = {
            "ratio": rows[names[4]]["tokens_per_s"] / rows[names[5]]["tokens_per_s"]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--window-threads", type=int, default=None,
                    help="also time the exact recompute past the context on this many threads (and nanoGPT's loop)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--corpus", type=Path, default=None, help="text for the character vocabulary")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.corpus is not None and not args.corpus.exists():
        sys.exit(f"error: {args.corpus} does not exist; pass --corpus FILE or leave it out")

    text = corpus_text(args.corpus)
    tok = build_tokenizer("char", text)
    results: dict[str, dict] = {}
    for arch in args.archs.split(","):
        if arch == "transformer":
            results.update(transformer_rows(tok, args.tokens, args.threads, args.repeats, args.window_threads))
            continue
        torch.manual_seed(0)
        model = build_model(arch, make_config(arch, tok.vocab_size))
        if arch == "ngram":
            model.fit(tok.encode(text).astype("int64"))
        model.eval()
        torch.set_num_threads(args.threads)
        timed_generation(model, tok, 20)
        results.update(alternate({f"{arch}, {args.tokens} tokens": lambda m=model: timed_generation(m, tok, args.tokens)},
                                 args.repeats))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    meta = {"tokens": args.tokens, "threads": args.threads, "repeats": args.repeats, "load_avg_1min": load,
            "cpus": os.cpu_count(), "torch": torch.__version__, "decode_step": native_status()}
    if args.json:
        print(json.dumps({**meta, "results": results}, indent=1))
        return
    print(f"# {meta}")
    for name, row in results.items():
        if "ratio" in row:
            print(f"{name:70s} {row['ratio']:9.2f}x")
            continue
        split = "  ".join(f"{k[:-3]} {row[k]:.3f}" for k in ("model_ms", "processors_ms", "stream_ms") if k in row)
        print(f"{name:70s} {row['tokens_per_s']:9,.0f} tok/s" + (f"   ms/token: {split}" if split else ""))


if __name__ == "__main__":
    main()
