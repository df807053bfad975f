"""GPU figures in one sitting: matmul ceilings, Transformer training tokens/s and MFU at three sizes
(eager and torch.compile), LSTM/GRU through cuDNN, cached generation, and time to validation loss 1.47
for nanoGPT's shakespeare_char config. Run by ``benchmarks/gpu_check.sh``; writes ``gpu.json`` and
``gpu.md`` under ``--out``.

    python benchmarks/gpu_bench.py --out DIR [--corpus tinyshakespeare.txt] [--time-cap 240] [--dry-run]

``--dry-run`` runs every step on the CPU at toy sizes (seconds), so the script is tested without a GPU.
MFU is nanoGPT's: ``TransformerConfig.train_flops_per_token()`` (6 N + 12 L H Q T) x tokens/s over the
bf16 matmul ceiling measured here on random matrices, not a datasheet number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.device import autocast  # noqa: E402
from engine.models.registry import build_model, make_config  # noqa: E402

# Sizes: (name, model settings, batch, context). "cpu-recipe" is nanoGPT's README CPU run, "shakespeare"
# its config/train_shakespeare_char.py (10.65M non-embedding parameters), "gpt2-124m" GPT-2 small.
TRANSFORMERS = [
    ("cpu-recipe-0.8M", dict(layers=4, heads=4, width=128, dropout=0.0), 12, 64, 65),
    ("shakespeare-10.65M", dict(layers=6, heads=6, width=384, dropout=0.2, bias=False), 64, 256, 65),
    ("gpt2-124M", dict(layers=12, heads=12, width=768, dropout=0.0), 16, 1024, 50304),
]
TOY = [
    ("toy-a", dict(layers=1, heads=2, width=32, dropout=0.0), 4, 16, 65),
    ("toy-b", dict(layers=2, heads=2, width=32, dropout=0.0), 4, 32, 65),
    ("toy-c", dict(layers=2, heads=4, width=64, dropout=0.0), 2, 64, 512),
]
RECURRENT = dict(layers=2, width=256, embed=256, dropout=0.0)  # batch 32 x bptt 64, 65 characters


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
                           "python": platform.python_version(), "torch": torch.__version__, "device": device,
                           "cpu_threads": torch.get_num_threads(), "cuda": torch.version.cuda}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    return env


def matmul_ceiling(device: str, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n x n matrix product on random data: mean of ``repeats`` after warm-ups."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def _optimizer(model: torch.nn.Module, device: str) -> torch.optim.Optimizer:
    fused = device.startswith("cuda")
    return torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)


def train_rate(model: torch.nn.Module, device: str, precision: str, batch: int, context: int, vocab: int,
               steps: int, warmup: int, compile_model: bool) -> dict[str, Any]:
    """Tokens/s of full training steps (forward, backward, clip, AdamW) on random tokens."""
    model = model.to(device).train()
    opt = _optimizer(model, device)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randint(0, vocab, (batch, context + 1), device=device)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    t_compile = time.perf_counter()

    def step() -> None:
        with autocast(device, precision):
            _, loss, _ = step_model(inp, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(warmup):
        step()
        if i == 0:
            sync(device)
            t_compile = time.perf_counter() - t_compile
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = time.perf_counter() - t0
    return {"tokens_per_s": batch * context * steps / dt, "step_ms": 1e3 * dt / steps,
            "first_step_s": t_compile}


def bench_transformers(device: str, precision: str, dry: bool, peak: float) -> list[dict[str, Any]]:
    rows = []
    for name, over, batch, context, vocab in (TOY if dry else TRANSFORMERS):
        cfg = make_config("transformer", vocab, context=context, **over)
        for compiled in ((False, True) if not dry or name == "toy-a" else (False,)):
            row: dict[str, Any] = {"suite": "transformer", "name": name, "compile": compiled, "batch": batch,
                                   "context": context, "params": cfg.num_params()}
            model = None
            try:
                torch.manual_seed(0)
                model = build_model("transformer", cfg)
                steps = 3 if dry else (20 if "124M" in name else 50)
                row.update(train_rate(model, device, precision, batch, context, vocab, steps=steps,
                                      warmup=2 if dry else 5, compile_model=compiled))
                achieved = cfg.train_flops_per_token() * row["tokens_per_s"]
                row.update(flops_per_s=achieved, mfu=achieved / peak)
            except Exception as err:  # noqa: BLE001 - a failed size is a figure too
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            rows.append(row)
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def bench_recurrent(device: str, precision: str, dry: bool) -> list[dict[str, Any]]:
    rows = []
    over = dict(layers=1, width=32, embed=16, dropout=0.0) if dry else RECURRENT
    for arch in ("lstm", "gru"):
        for batch in ((4,) if dry else ((32,) if device == "cpu" else (32, 256))):
            cfg = make_config(arch, 65, **over)
            torch.manual_seed(0)
            row: dict[str, Any] = {"suite": "recurrent", "name": arch, "batch": batch, "bptt": 16 if dry else 64,
                                   "params": cfg.num_params(), "settings": over}
            try:
                row.update(train_rate(build_model(arch, cfg), device, precision, batch, 16 if dry else 64, 65,
                                      steps=3 if dry else (10 if device == "cpu" else 50), warmup=2 if dry else 3,
                                      compile_model=False))
            except Exception as err:  # noqa: BLE001
                row["error"] = f"{type(err).__name__}: {err}"
            rows.append(row)
    return rows


def bench_generation(device: str, precision: str, dry: bool) -> list[dict[str, Any]]:
    """Greedy tokens/s with the KV cache (batch 1), within the context window."""
    rows = []
    for name, over, _batch, context, vocab in (TOY[:2] if dry else TRANSFORMERS[:2]):
        cfg = make_config("transformer", vocab, context=context, **over)
        torch.manual_seed(0)
        model = build_model("transformer", cfg).to(device).eval()
        n = min(context - 1, 30 if dry else context - 1)
        with torch.no_grad(), autocast(device, precision):
            tok = torch.zeros(1, 1, dtype=torch.long, device=device)
            for _rep in range(2):  # the first pass warms up kernels
                state = None
                sync(device)
                t0 = time.perf_counter()
                for _ in range(n):
                    logits, _, state = model(tok, state=state, use_cache=True)
                    tok = logits[:, -1:].argmax(-1)
                sync(device)
                dt = time.perf_counter() - t0
        rows.append({"suite": "generation", "name": name, "tokens": n, "tokens_per_s": n / dt,
                     "note": "greedy, batch 1, KV cache, model forward only"})
    return rows


def time_to_target(corpus: str, device: str, dry: bool, target: float, cap_s: float) -> dict[str, Any]:
    """nanoGPT's shakespeare_char recipe through seqplay's Trainer, stopped at val <= target or the cap."""
    import tempfile

    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer
    from engine.worker import protocol as P

    model = dict(layers=1, heads=2, width=32, dropout=0.0) if dry else \
        dict(layers=6, heads=6, width=384, dropout=0.2, bias=False)
    cfg = TrainConfig(source=corpus, arch="transformer", model=model, context=16 if dry else 256,
                      batch_size=8 if dry else 64, lr=1e-3, warmup=100 if not dry else 2, min_lr_ratio=0.1,
                      steps=30 if dry else 5000, eval_every=10 if dry else 250, sample_every=0,
                      weight_decay=0.1, device=device, precision="bf16", compile="off" if dry else "on",
                      runs_dir=tempfile.mkdtemp(prefix="seqplay-gpu-"), seed=1337)
    t_start = time.perf_counter()
    curve: list[dict[str, float]] = []
    reached: dict[str, Any] = {}
    last_train = {"elapsed": 0.0}

    def emit(event: Any) -> None:
        if isinstance(event, P.StepMetrics) and event.points:
            last_train["elapsed"] = event.points[-1].elapsed
        if isinstance(event, P.EvalMetrics):
            point = {"step": event.step, "val_loss": event.val_loss, "wall_s": time.perf_counter() - t_start,
                     "train_elapsed_s": last_train["elapsed"]}
            curve.append(point)
            if not reached and event.val_loss <= target:
                reached.update(point)
        if isinstance(event, P.ErrorEvent):
            curve.append({"error": event.message})

    def control(timeout: float) -> list[Any]:
        if reached or time.perf_counter() - t_start > cap_s:
            return [P.Stop(save=False)]
        if timeout:
            time.sleep(min(timeout, 0.05))
        return []

    fin = Trainer(cfg, emit, control=control).run()
    best = min((p["val_loss"] for p in curve if "val_loss" in p), default=float("nan"))
    return {"suite": "target", "name": f"shakespeare-10.65M to val {target:.2f}", "target": target,
            "reached": bool(reached), "at": reached or None, "best_val_loss": best, "steps": fin.step,
            "wall_s": time.perf_counter() - t_start, "cap_s": cap_s, "curve": curve,
            "eval": "seqplay's default validation (see the run's eval sample size)"}


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def table(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# seqplay GPU figures ({env.get('gpu', env['device'])}, torch {env['torch']}, CUDA {env['cuda']}, "
             f"driver {env.get('driver')}, {env['time']})", "",
             f"bf16 matmul ceiling: {result['ceilings']['bf16'] / 1e12:,.1f} TFLOP/s; fp32: "
             f"{result['ceilings']['fp32'] / 1e12:,.1f} TFLOP/s; tf32: {result['ceilings']['tf32'] / 1e12:,.1f} TFLOP/s",
             "", "| suite | name | compile | batch x context | params | tokens/s | step ms | MFU | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["suite"] == "target":
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        shape = f"{r.get('batch', 1)} x {r.get('context', r.get('bptt', r.get('tokens', '')))}"
        lines.append(f"| {r['suite']} | {r['name']} | {r.get('compile', '-')} | {shape} | {_fmt(r.get('params'))} | "
                     f"{_fmt(r.get('tokens_per_s'), 0)} | {_fmt(r.get('step_ms'))} | {mfu} | "
                     f"{r.get('error', r.get('note', ''))} |")
    for r in result["rows"]:
        if r["suite"] == "target":
            at = r["at"] or {}
            lines += ["", f"time to target: {r['name']}: reached={r['reached']}, step {at.get('step', '-')}, "
                          f"{_fmt(at.get('wall_s'))} s wall ({_fmt(at.get('train_elapsed_s'))} s training), "
                          f"best val {_fmt(r['best_val_loss'], 4)}, cap {r['cap_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpora/tinyshakespeare.txt"))
    ap.add_argument("--time-cap", type=float, default=240.0, help="seconds for the time-to-target run")
    ap.add_argument("--target", type=float, default=1.47)
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: proves the script end to end")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for the CPU reference of the same sizes "
                    "(e.g. --device cpu --skip transformer,generation,target for the LSTM/GRU baseline)")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: transformer,recurrent,generation,target")
    args = ap.parse_args(argv)
    device = "cpu" if args.dry_run else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; use --dry-run to run the steps on the CPU at toy sizes", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = True
    n, reps = (512, 3) if args.dry_run else ((8192, 10) if device != "cpu" else (2048, 3))
    torch.backends.cuda.matmul.allow_tf32 = False
    fp32 = matmul_ceiling(device, torch.float32, n, reps)
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32 = matmul_ceiling(device, torch.float32, n, reps)
    bf16 = matmul_ceiling(device, torch.bfloat16, n, reps)
    result: dict[str, Any] = {"environment": environment(device), "dry_run": args.dry_run,
                              "ceilings": {"bf16": bf16, "fp32": fp32, "tf32": tf32, "matmul_n": n}, "rows": []}
    precision = "bf16"
    steps = [("transformer", lambda: bench_transformers(device, precision, args.dry_run, bf16)),
             ("recurrent", lambda: bench_recurrent(device, precision, args.dry_run)),
             ("generation", lambda: bench_generation(device, precision, args.dry_run))]
    if "target" not in skip:
        if not Path(args.corpus).is_file():
            print(f"error: corpus {args.corpus} not found; pass --corpus PATH to tinyshakespeare.txt", file=sys.stderr)
            return 2
        steps.append(("target", lambda: [time_to_target(args.corpus, device, args.dry_run, args.target, args.time_cap)]))
    failed = False
    for name, fn in steps:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            rows = fn()
        except Exception:  # noqa: BLE001 - keep the other figures
            failed = True
            rows = [{"suite": name, "name": "failed", "error": traceback.format_exc(limit=3).splitlines()[-1]}]
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
        result["rows"].extend(rows)
        (out / "gpu.json").write_text(json.dumps(result, indent=1, default=str))
    text = table(result)
    (out / "gpu.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
