"""Data-parallel training past one process: ``seqplay train ... --nproc N`` (or ``torchrun``).

Every rank runs the same Trainer on the same *global* batch stream and takes its own slice of rows::

    global batch (B rows) = [rank 0: rows 0..B/N) | rank 1: rows B/N..2B/N) | ...]
    grad = (1/N) sum_r grad_r          DistributedDataParallel all-reduces (mean) during backward
    loss = (1/N) sum_r loss_r          one more all-reduce, folded into the step's single host sync

Each rank's loss is a mean over the same number of tokens, so the mean of the ranks' means is the
global mean: N processes follow the single-process run at the same global batch up to float rounding
(tests/test_ddp.py checks it), and a run may be resumed with any N that divides the batch.

One run folder: rank 0 creates it, writes metrics, samples and checkpoints; other ranks write nothing.
Stopping is agreed on every step (one all-reduce of a stop code and the wall time), so a time budget or Ctrl-C never
leaves one rank waiting for the others. Backend: NCCL on GPUs (rank r uses cuda:r), gloo on CPU, where
each rank gets ``cores // N`` intra-op threads so the ranks do not oversubscribe the cores.

``torchrun --nproc-per-node N -m engine.training.distributed CONFIG.json`` runs the same thing from a
TrainConfig JSON file (events printed as JSON lines by rank 0).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from engine.errors import ConfigError
from engine.training.config import TrainConfig
from engine.worker import protocol as P

_STOP_CODES = {None: 0, "done": 1, "time": 2, "stopped": 3}
_STOP_NAMES = {v: k for k, v in _STOP_CODES.items()}


def check_world(batch_size: int, nproc: int) -> None:
    """Refuse a process count that cannot split the batch evenly (one line, what to do)."""
    if nproc < 1:
        raise ConfigError(f"nproc must be at least 1, got {nproc}")
    if batch_size % nproc:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over {nproc} processes; "
                          f"use a batch size that is a multiple of {nproc}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_trainer_class() -> type:
    """The Trainer subclass (built lazily: importing this module must not import torch)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from engine.training.trainer import Trainer

    class DistributedTrainer(Trainer):
        """A Trainer that is one rank of a data-parallel group (the process group is already set up)."""

        def __init__(self, *args: Any, stop_flag: Callable[[], bool] | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            self.is_main = self.rank == 0
            self.stop_flag = stop_flag or (lambda: False)

        def setup(self) -> None:
            if torch.cuda.is_available() and dist.get_backend() == "nccl":
                torch.cuda.set_device(self.rank % torch.cuda.device_count())
            super().setup()
            check_world(self.config.batch_size, self.world)
            if self.device == "cpu" and self.config.threads is None:
                self.threads = max(1, self.threads // self.world)
                torch.set_num_threads(self.threads)
            self.local_batch = self.config.batch_size // self.world
            device_ids = [torch.cuda.current_device()] if self.device.startswith("cuda") else None
            self.forward_model = DDP(self.model, device_ids=device_ids, broadcast_buffers=False)

        def next_batch(self) -> Any:
            batch = super().next_batch()  # the global batch; every rank draws the same one
            lo = self.rank * self.local_batch
            return batch.slice(lo, lo + self.local_batch)

        def reduce_loss(self, total: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            return total / self.world

        defer_checks = False  # a blow-up is read every step, so every rank handles it at the same step

        def train_step(self) -> tuple[float, float, float, int] | None:
            result = super().train_step()
            if result is None:
                return None
            loss_v, norm_v, lr, tokens = result
            self.tokens_seen += tokens * (self.world - 1)  # the trainer counted this rank's share
            return loss_v, norm_v, lr, tokens * self.world

        def stop_reason(self) -> str | None:
            reason = super().stop_reason()
            code = _STOP_CODES.get(reason, _STOP_CODES["stopped"])
            if self.stop_flag():
                code = max(code, _STOP_CODES["stopped"])
            # One all-reduce agrees on the stop and on the wall time, which a --time schedule reads:
            # every rank then uses the same learning rate.
            agreed = torch.tensor([float(code), self.elapsed], dtype=torch.float64, device=self.device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            code_v, self.elapsed = agreed.tolist()
            agreed_reason = _STOP_NAMES[int(code_v)]
            if agreed_reason == "stopped" and not self.stop_requested:
                self.stop_requested = "stopped"
            return reason if reason == "error" else agreed_reason

        def sample(self, *args: Any, **kwargs: Any) -> Any:
            return super().sample(*args, **kwargs) if self.is_main else None

    return DistributedTrainer


def _init_group(rank: int, world: int, init_method: str | None, device: str) -> str:
    import torch
    import torch.distributed as dist

    use_nccl = device != "cpu" and torch.cuda.is_available() and dist.is_nccl_available()
    backend = "nccl" if use_nccl else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=10)}
    if init_method is not None:
        kwargs.update(init_method=init_method, rank=rank, world_size=world)
    dist.init_process_group(**kwargs)
    return backend


def _rank_main(rank: int, world: int, init_method: str, config: dict[str, Any], resume_from: str | None,
               overrides: dict[str, Any] | None, events: Any, stop: Any) -> None:
    """One spawned rank: join the group, train, leave. Rank 0 forwards its events to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into an agreed stop
    import torch.distributed as dist

    device = (overrides or {}).get("device") or config.get("device") or "auto"
    _init_group(rank, world, init_method, device)
    try:
        cls = _make_trainer_class()
        emit = events.put if rank == 0 else (lambda e: None)
        cls(config, emit, resume_from=resume_from, pause_on_error=False, overrides=overrides,
            stop_flag=stop.is_set).run()
    finally:
        dist.destroy_process_group()


def _ranks_that_fit(cfg: dict[str, Any], overrides: dict[str, Any] | None, nproc: int,
                    emit: Callable[[P.Event], None]) -> int:
    """NCCL needs one GPU per rank: on a CUDA run asking for more ranks than GPUs, train with one rank
    per GPU (saying so) instead of failing inside NCCL with a duplicate-GPU error."""
    import torch

    device = str((overrides or {}).get("device") or cfg.get("device") or "auto")
    if device == "cpu" or not torch.cuda.is_available():
        return nproc
    gpus = torch.cuda.device_count()
    if gpus >= nproc:
        return nproc
    emit(P.LogLine(job=str(cfg.get("run_name") or ""), level="warning",
                   text=f"--nproc {nproc} needs {nproc} GPUs but this machine has {gpus} GPU"
                        f"{'s' if gpus != 1 else ''}; training with {gpus} process{'es' if gpus != 1 else ''} "
                        f"(use --device cpu for {nproc} gloo ranks)"))
    return gpus


def run_distributed(config: TrainConfig | dict[str, Any], emit: Callable[[P.Event], None], nproc: int,
                    resume_from: str | None = None, overrides: dict[str, Any] | None = None,
                    stop_requested: Callable[[], bool] = lambda: False) -> P.Finished | None:
    """Train with ``nproc`` spawned ranks on this machine; rank 0's events go to ``emit``.

    ``stop_requested`` is polled (Ctrl-C in the CLI): every rank then finishes the step, rank 0 saves.
    A rank that dies takes the others down and becomes one fatal ErrorEvent.
    """
    cfg = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    if not resume_from:
        TrainConfig.from_dict(cfg).validate()
        check_world(int(cfg.get("batch_size", 32)), nproc)
    nproc = _ranks_that_fit(cfg, overrides, nproc, emit)
    ctx = mp.get_context("spawn")
    events, stop = ctx.Queue(), ctx.Event()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=_rank_main, name=f"seqplay-rank{r}", daemon=True,
                         args=(r, nproc, init_method, cfg, resume_from, overrides, events, stop))
             for r in range(nproc)]
    for p in procs:
        p.start()
    finished: P.Finished | None = None

    def drain(timeout: float) -> None:
        nonlocal finished
        try:
            event = events.get(timeout=timeout) if timeout > 0 else events.get_nowait()
            while True:
                emit(event)
                if isinstance(event, P.Finished):
                    finished = event
                event = events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            pass

    try:
        while any(p.is_alive() for p in procs):
            if stop_requested():
                stop.set()
            drain(0.1)
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                time.sleep(0.5)  # let the other ranks notice and report, then make sure they are gone
                break
        drain(0.0)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        events.cancel_join_thread()
        events.close()
    dead = [p for p in procs if p.exitcode not in (None, 0)]
    if finished is None:
        why = f"rank {procs.index(dead[0])} exited with code {dead[0].exitcode}" if dead else "the ranks ended early"
        emit(P.ErrorEvent(message=f"data-parallel training failed ({why}); the last checkpoint is intact, "
                                  "continue with `seqplay resume RUN`", fatal=True))
    return finished


def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc-per-node N -m engine.training.distributed CONFIG.json [--resume CKPT]``."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="one rank of seqplay data-parallel training (under torchrun)")
    ap.add_argument("config", help="TrainConfig as JSON (a run folder's config.json works)")
    ap.add_argument("--resume", default=None, help="checkpoint or run folder to continue")
    args = ap.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        config = json.load(fh)
    rank = int(os.environ.get("RANK", "0"))
    _init_group(rank, int(os.environ.get("WORLD_SIZE", "1")), None, config.get("device", "auto"))
    import torch.distributed as dist

    try:
        cls = _make_trainer_class()
        emit = (lambda e: print(e.to_json(), flush=True)) if rank == 0 else (lambda e: None)
        fin = cls(config, emit, resume_from=args.resume, pause_on_error=False).run()
    finally:
        dist.destroy_process_group()
    return 0 if fin.reason != "error" else 2


if __name__ == "__main__":
    sys.exit(main())
