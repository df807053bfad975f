"""What does training through the worker cost? Tokens/s of a bare loop vs the Trainer in the worker.

    python benchmarks/worker_overhead.py                # bare loop vs worker, same model and batches
    python benchmarks/worker_overhead.py --sweep        # bare loop: fp32 vs bf16, 1 vs 2 threads

The bare loop is the minimum: forward, backward, clip, AdamW step, no events, no syncs. The worker run
is ``seqplay train --worker``'s path: a spawned process running the Trainer (one host sync per step
for the NaN guard, command polling between steps, StepMetrics batched ~10/s) while this process reads
events. Worker tokens/s is measured here, from the arrival times of StepMetrics batches (their last
step), over the steps after a warm-up, so every overhead between steps counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def make_config(arch: str, steps: int, threads: int | None, precision: str = "fp32", corpus: str | None = None):
    """The measured run's config; ``corpus`` defaults to the shared tinyshakespeare (a missing one is
    a one-line error, never a switch to another corpus)."""
    from benchmarks.suite import SHAKESPEARE, resolve_corpus
    from engine.training.config import TrainConfig

    model = dict(layers=2, width=128, heads=4, dropout=0.0) if arch == "transformer" else dict(layers=1, width=256, embed=64, dropout=0.0)
    return TrainConfig(
        source=resolve_corpus(corpus, SHAKESPEARE, "--corpus"), arch=arch, model=model, context=64, batch_size=32,
        steps=steps, eval_every=10**9, sample_every=0, schedule="constant", precision=precision, threads=threads,
        runs_dir=os.environ.get("BENCH_RUNS", "/tmp/seqplay-bench-runs"), compile="off",
    )


def bare_loop(cfg, warmup: int = 10) -> float:
    """Tokens/s of the minimal loop on the Trainer's own model, optimizer and batches."""
    import torch

    from engine.device import autocast
    from engine.training.trainer import Trainer

    t = Trainer(cfg, lambda e: None)
    t.setup()
    model, opt, params = t.model, t.optimizer, t.params
    model.train()
    state = None
    start = None
    for i in range(cfg.steps):
        if i == warmup:
            start = time.perf_counter()
        batch = t.next_batch()
        (x, y), recurrent = batch.tensors, getattr(t.task, "recurrent", False)
        if recurrent and batch.reset:
            state = None
        with autocast(t.device, t.precision):
            if recurrent:
                _, loss, state = model(x, y, state=state)
                state = model.detach_state(state)
            else:
                _, loss, _ = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    elapsed = time.perf_counter() - start
    t.metrics.close()
    return (cfg.steps - warmup) * cfg.batch_size * t.context / elapsed


def through_worker(cfg, warmup: int = 10) -> float:
    from engine.worker import protocol as P
    from engine.worker.client import WorkerClient

    arrivals: list[tuple[int, float]] = []
    with WorkerClient() as client:
        client.send(P.StartTraining(config=cfg.to_dict()))
        while True:
            events = client.poll(0.05)
            now = time.perf_counter()
            for e in events:
                if isinstance(e, P.StepMetrics) and e.points:
                    arrivals.append((e.points[-1].step, now))
                if isinstance(e, P.ErrorEvent):
                    raise SystemExit(f"worker error: {e.message}")
            if any(isinstance(e, P.Finished) for e in events):
                break
    after = [(s, t) for s, t in arrivals if s >= warmup]
    (s0, t0), (s1, t1) = after[0], after[-1]
    context = cfg.context
    return (s1 - s0) * cfg.batch_size * context / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="transformer")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sweep", action="store_true", help="bare loop only: precision x threads, transformer and lstm")
    ap.add_argument("--corpus", default=None, help="text corpus (default: $SEQPLAY_SHARED/corpora/tinyshakespeare.txt)")
    args = ap.parse_args()
    if args.sweep:
        for arch in ("transformer", "lstm"):
            for precision in ("fp32", "bf16"):
                for threads in (1, 2):
                    tps = bare_loop(make_config(arch, args.steps, threads, precision, args.corpus))
                    print(f"{arch:12s} {precision} threads={threads}: {tps:10,.0f} tok/s", flush=True)
        return
    cfg = make_config(args.arch, args.steps, args.threads, corpus=args.corpus)
    bare, work = [], []
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        bare.append(bare_loop(cfg))
        work.append(through_worker(cfg))
        print(f"bare {bare[-1]:,.0f} tok/s   worker {work[-1]:,.0f} tok/s", flush=True)
    b, w = sum(bare) / len(bare), sum(work) / len(work)
    print(f"{args.arch}: bare loop {b:,.0f} tok/s, through the worker {w:,.0f} tok/s, overhead {100 * (1 - w / b):+.1f}% "
          f"(mean of {args.repeats} interleaved pairs, {args.steps} steps, {args.threads} threads)")


if __name__ == "__main__":
    from engine.errors import SeqplayError

    try:
        main()
    except SeqplayError as err:
        sys.exit(f"error: {err}")
