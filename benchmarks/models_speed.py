"""Training throughput of every architecture at its default size: tokens/s of forward + backward +
AdamW step on batch 32 x context 64 (char vocabulary of 65), in fp32 and under bf16 autocast.

    python benchmarks/models_speed.py                 # all architectures, fp32 and bf16
    python benchmarks/models_speed.py --arch lstm --steps 10 --threads 2
    python benchmarks/models_speed.py --ugrnn-scan    # eager vs TorchScript vs torch.compile loop

The machine may be shared: absolute numbers move with the load, ratios between rows measured in one
run are the figure to quote. The n-gram row times ``fit`` on 1M random tokens instead.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from engine.models.registry import ARCHS, build_model, make_config

VOCAB = 65


def batch_for(arch: str, model, B: int, T: int, gen: torch.Generator):
    vocab = model.config.vocab_size
    x = torch.randint(0, VOCAB, (B, T), generator=gen)
    y = torch.randint(0, VOCAB, (B, T), generator=gen)
    if arch == "mlm":
        return model.masking(x, gen)
    if arch == "seq2seq":
        return x, torch.cat([torch.full((B, 1), vocab - 2), y[:, :-1]], 1), y
    return x, y


def time_arch(arch: str, B: int, T: int, steps: int, precision: str) -> float:
    """tokens/s of training steps (after one warm-up step)."""
    specials = {"mlm": 1, "seq2seq": 3}.get(ARCHS[arch].task, 0)
    torch.manual_seed(0)
    if arch == "ngram":
        ids = np.random.default_rng(0).integers(0, VOCAB, 1_000_000)
        model = build_model(arch, make_config(arch, VOCAB))
        start = time.perf_counter()
        model.fit(ids)
        return ids.size / (time.perf_counter() - start)
    # `context` is the attention window for transformer/mlm but the MLP's n-token window: keep its default
    over = {} if arch == "mlp" else {"context": T}
    model = build_model(arch, make_config(arch, VOCAB + specials, **over))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    elapsed = 0.0
    for step in range(steps + 1):
        batch = batch_for(arch, model, B, T, gen)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, loss, _ = model(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:  # the first step warms up allocators and kernels
            elapsed += time.perf_counter() - start
    return B * T * steps / elapsed


def ugrnn_scan_modes(B: int, T: int, steps: int) -> dict[str, float]:
    from engine.models import recurrent

    out = {}
    for mode in ("eager", "script", "compile"):
        got = recurrent.set_ugrnn_scan(mode)
        if got != mode:
            out[mode] = float("nan")
            continue
        try:
            out[mode] = time_arch("ugrnn", B, T, steps, "fp32")
        except Exception as err:  # compile may need a toolchain this machine lacks
            print(f"{mode}: failed ({type(err).__name__})")
            out[mode] = float("nan")
    recurrent.set_ugrnn_scan("eager")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="architecture(s) to time (default: all)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    ap.add_argument("--ugrnn-scan", action="store_true", help="compare the UGRNN loop implementations")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ugrnn_scan:
        res = ugrnn_scan_modes(args.batch, args.context, args.steps)
        print(json.dumps(res) if args.json else "\n".join(f"ugrnn {k:8s} {v:10.0f} tok/s" for k, v in res.items()))
        return
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    rows = []
    for arch in args.arch or list(ARCHS):
        row = {"arch": arch}
        for p in precisions if arch != "ngram" else ["fp32"]:
            row[p] = time_arch(arch, args.batch, args.context, args.steps, p)
        rows.append(row)
        if not args.json:
            cells = "  ".join(f"{p} {row[p]:>10,.0f} tok/s" for p in precisions if p in row)
            print(f"{arch:12s} {cells}", flush=True)
    if args.json:
        print(json.dumps(rows))
    else:
        base = next((r["fp32"] for r in rows if r["arch"] == "transformer"), None)
        if base:
            print("fp32 throughput relative to the transformer: "
                  + ", ".join(f"{r['arch']} {r['fp32'] / base:.2f}x" for r in rows if r["arch"] != "ngram"))


if __name__ == "__main__":
    main()
