"""MFU of the fast defaults' Transformer step in CPU time, for a machine shared with other jobs.

Wall-clock step times on a loaded machine measure the other jobs; the CPU time of the training
thread (``time.thread_time``) does not (cache and memory contention remain). On one thread, this
measures the bf16 matmul ceiling (2048^3, best of 5) and the median step (of 10) the same way, in
alternating rounds, and reports their ratio: MFU in CPU time.

    python benchmarks/step_cpu_time.py [--rounds 3] [--corpus FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import SHAKESPEARE, flops_per_token, resolve_corpus  # noqa: E402
from engine.training.presets import TRANSFORMER_FAST  # noqa: E402


def main() -> None:
    import torch

    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpus", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig(source=resolve_corpus(args.corpus, SHAKESPEARE, "--corpus"), arch="transformer",
                      model={**TRANSFORMER_FAST["model"], "dropout": 0.0}, context=TRANSFORMER_FAST["context"],
                      batch_size=TRANSFORMER_FAST["batch_size"], steps=10**9, eval_every=10**9, sample_every=0,
                      checkpoint_every=10**9, runs_dir=tempfile.mkdtemp(prefix="seqplay-cpu-"), threads=1)
    t = Trainer(cfg, lambda e: None)
    t.setup()
    t.model.train()
    for _ in range(3):
        t.train_step()
    per_step = flops_per_token(t.model, t.model_config) * cfg.batch_size * t.context
    a, b = torch.randn(2048, 2048).bfloat16(), torch.randn(2048, 2048).bfloat16()
    a @ b
    for r in range(args.rounds):
        best = min(_cpu(lambda: a @ b) for _ in range(5))
        ceiling = 2 * 2048**3 / best
        step = sorted(_cpu(t.train_step) for _ in range(10))[5]
        print(f"round {r + 1}: bf16 ceiling {ceiling / 1e9:.1f} GFLOP/s, step {1000 * step:.1f} ms, "
              f"{per_step / step / 1e9:.1f} GFLOP/s, MFU {per_step / step / ceiling:.1%} (CPU time, {t.precision}, 1 thread)",
              flush=True)


def _cpu(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


if __name__ == "__main__":
    from engine.errors import SeqplayError

    try:
        main()
    except SeqplayError as err:
        sys.exit(f"error: {err}")
