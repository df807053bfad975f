"""Where and how training runs: device pick, precision, thread count, torch.compile, memory estimate.

Every default here is a decision taken on purpose; the comments give the measurement behind it
(machine: 2-core AMD EPYC VM with AVX-512 BF16, torch 2.13 CPU, shared with other jobs, so the
figures are noisy; ``benchmarks/worker_overhead.py --sweep`` re-measures them).
Imports torch lazily so ``engine.device.available_memory`` and ``estimate_training_memory`` stay
usable before anything heavy is loaded.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from typing import Any

from engine.errors import ConfigError

# Bytes kept aside for the interpreter, torch itself and the data when judging what fits in RAM.
_RESERVE_BYTES = 600 * 2**20


def pick_device(spec: str = "auto") -> str:
    """``auto`` -> CUDA, then MPS, then CPU. An explicit device that is not there is refused."""
    import torch

    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} asked for but no CUDA GPU is available; use --device cpu or auto")
        if ":" in spec:
            index = spec.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ConfigError(f"no GPU {spec!r}; this machine has {torch.cuda.device_count()} (cuda:0 ...)")
        return spec
    if spec == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' asked for but Apple MPS is not available; use --device cpu or auto")
        return spec
    if spec == "cpu":
        return spec
    raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.01) -> int:
    """Other runnable tasks right now (median of a few reads of /proc/stat's procs_running, less this
    process); 0 where /proc is not available."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                line = next((ln for ln in f if ln.startswith("procs_running")), "")
            counts.append(max(0, int(line.split()[1]) - 1))
        except (OSError, ValueError, IndexError):
            return 0
        if i + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def choose_threads(requested: int | None, reserve: int = 0) -> int:
    """Intra-op threads for the training process.

    Default: the cores that are idle now, less ``reserve`` (the app passes 1 to keep a core for the
    UI), at least 1. Both halves are measured on this 2-core machine: idle, 2 threads trained 1.4-1.46x
    faster than 1 (`seqplay bench train --arch transformer --arch lstm --threads 1|2`: transformer
    20.2k/21.5k vs 29.6k/30.6k tok/s, lstm 35.7k/36.8k vs 50.9k/51.4k); with another busy process on
    the cores, 2 threads fell to a third of 1 thread's speed (`python benchmarks/worker_overhead.py
    --sweep --steps 40`: transformer 11.8k vs 3.8k tok/s) -- oversubscribed threads lose badly.
    An explicit count is checked against TrainConfig's ``threads`` bounds (it may come from a saved
    config) and capped at the usable cores: more threads than cores only oversubscribe them, and torch
    crashed creating 1,000,000.
    """
    cores = usable_cores()
    if requested is not None:
        from engine.settings import setting_of
        from engine.training.config import TrainConfig

        setting_of(TrainConfig, "threads").check(requested)
        return min(requested, cores)
    return max(1, min(cores - reserve, cores - busy_cores()))


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def choose_precision(requested: str, device: str, family: str) -> str:
    """fp32 | bf16 | fp16 for autocast. ``auto`` picks the fast path per device and model family.

    * CPU with native bf16: bf16 autocast (weights and optimizer stay fp32; the loss is computed in
      fp32). Measured here (AVX-512 BF16, 1 thread, batch 32 x 64, two interleaved rounds): 2-layer
      width-128 Transformer 24.8k/31.0k tok/s fp32 vs 27.5k/38.9k bf16; 1-layer width-256 LSTM
      53.8k/56.7k fp32 vs 130k/107k bf16. Without native bf16 it is emulated and slower: fp32.
    * CUDA: bf16 where the GPU supports it (Ampere and later), else fp32 (no fp16 grad scaler, which
      would make resume inexact).
    * MPS, and count-based models: fp32.
    Exact-resume guarantees are stated for fp32 (``--precision fp32``).
    """
    import torch

    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            raise ConfigError("fp16 is not supported for training on CPU; use --precision bf16 or fp32")
        if requested == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use --precision fp32")
        return requested
    if family == "count":
        return "fp32"
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bf16"
    if device == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def autocast(device: str, precision: str) -> Any:
    """The autocast context for a forward pass (a no-op in fp32).

    On CPU in bf16 it also routes ``scaled_dot_product_attention`` to its math path: torch's CPU
    flash-attention kernel spent 9 ms per call in its bf16 backward at context 64 (half of a training
    step of the 4-layer width-128 Transformer, torch.profiler), and the math path made that step about
    1.44x faster (Trainer step 52.4 -> 36.4 ms, best of 10, 6 interleaved rounds, batch 16 x 64, dropout 0,
    1 thread). With dropout > 0 torch takes the math path anyway (neutral there).
    """
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    ctx = torch.autocast(device_type=device.split(":")[0], dtype=dtype)
    if device == "cpu" and precision == "bf16":
        from contextlib import ExitStack

        from torch.nn.attention import SDPBackend, sdpa_kernel

        stack = ExitStack()
        stack.enter_context(ctx)
        stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return stack
    return ctx


def should_compile(requested: str, device: str, family: str) -> bool:
    """Whether to wrap the model in torch.compile.

    ``auto`` means no (not measured to help here): compilation happens before the first step and a
    playground run is short; recurrent models spend their time inside one fused kernel. ``on`` tries
    it and falls back to eager with a log line if it fails.
    """
    return requested == "on" and family != "count"


def available_memory(device: str = "cpu") -> int | None:
    """Bytes free for a new model on ``device``: MemAvailable (or MemFree) from /proc/meminfo for the
    CPU, the CUDA allocator's free memory for a GPU; None when it cannot be known."""
    if device.startswith("cuda"):
        try:
            import torch

            free, _total = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:  # noqa: BLE001 - unknown is a valid answer
            return None
    if device == "mps":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: line.split(":")[1] for line in fh if ":" in line}
        field = info.get("MemAvailable") or info.get("MemFree")
        if field is None:
            return None
        return int(field.strip().split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None


def estimate_training_memory(
    params: int,
    batch_size: int,
    context: int,
    width: int,
    layers: int,
    vocab_size: int,
    optimizer: str = "adamw",
    bytes_per_value: int = 4,
    family: str = "attention",
) -> int:
    """A deliberately rough upper estimate (bytes) of what one training step needs.

    params x bytes x (weights + grads + optimizer moments) + activations kept for backward: about
    ``16 x width`` values per token per layer (attention/MLP/LSTM-gate intermediates) plus the logits,
    their softmax and their gradient (3 x vocab per token).
    """
    moments = {"adamw": 2, "adam": 2, "rmsprop": 1, "adagrad": 1, "sgd": 1}.get(optimizer, 2)
    weights = params * bytes_per_value * (2 + moments)
    if family == "count":
        return weights
    tokens = batch_size * context
    per_token = 16 * width * max(1, layers) + 3 * vocab_size
    if family == "attention" or family == "masked":
        # attention scores and their softmax: heads are folded into the width factor; T x T per row
        per_token += 2 * context * max(1, layers)
    return int(weights + tokens * per_token * bytes_per_value)


def check_fits(estimate: int, device: str, batch_size: int) -> None:
    """Refuse (one-line ConfigError, with a batch size that fits) a run that would not fit in memory."""
    free = available_memory(device)
    if free is None:
        return
    budget = free - (_RESERVE_BYTES if device == "cpu" else 0)
    if estimate <= budget:
        return
    fits = batch_size
    while fits > 1 and estimate * fits / batch_size > budget:
        fits //= 2
    gib = 2**30
    if estimate * fits / batch_size <= budget and fits < batch_size:
        advice = f"use --batch-size {fits} (or a smaller --context/--width)"
    else:
        advice = "use a smaller --width/--layers/--context"
    raise ConfigError(
        f"this model and batch need about {estimate / gib:.1f} GiB but only {max(budget, 0) / gib:.1f} GiB "
        f"is free on {device}; {advice}"
    )


def is_out_of_memory(err: BaseException) -> bool:
    """True for torch.OutOfMemoryError and the RuntimeErrors allocators raise when memory runs out."""
    name = type(err).__name__
    text = str(err).lower()
    return name == "OutOfMemoryError" or isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def bits_per_char(loss_nats: float, n_tokens: int, n_chars: int) -> float:
    """bits/char = loss (nats/token) x tokens / characters / ln 2: one scale for char, word and BPE."""
    if n_chars <= 0 or not math.isfinite(loss_nats):
        return float("nan")
    return loss_nats * n_tokens / n_chars / math.log(2)


def environment(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Machine, CPU, device, torch/CUDA versions and thread count: recorded with every benchmark run,
    snapshot and experiment card (the one description of "where this ran")."""
    import platform

    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    env = {
        "machine": platform.node(), "cpu": cpu, "cores": cores, "device": device,
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    return env


class torch_threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self) -> None:
        if self.n is not None:
            import torch

            self.old = torch.get_num_threads()
            if self.old != self.n:
                torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None and self.old != self.n:
            import torch

            torch.set_num_threads(self.old)
