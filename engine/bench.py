"""The benchmark suite behind ``seqplay bench``: every figure with the machine it was taken on.

Suites (each returns ``Row``s; ``run_suites`` adds the environment and writes JSON):

* ``train``      training tokens/s of every language model at its default size, through the Trainer
                 (its default fast path: precision, threads, fused AdamW, one host sync per step);
                 achieved FLOP/s and MFU (where the peak is known) for the Transformer.
* ``target``     wall time for the Transformer of nanoGPT's shakespeare_char CPU recipe (4 layers,
                 4 heads, width 128, context 64, dropout 0) to reach a validation loss on a corpus,
                 with the tuned ``TARGET_PRESET`` (``--baseline`` also runs nanoGPT's own recipe).
* ``wordlm``     LSTM/GRU/RNN word LMs at pytorch/examples word_language_model's sizes on WikiText-2
                 against that example's own training loop, timed in the same process.
* ``generate``   streaming tokens/s with the KV cache / carried state, and re-running the context.
* ``tokenizers`` encoding MB/s per tokenizer.
* ``overhead``   the worker's (and, where benchmarks/tui_latency.py exists, the TUI's) cost against
                 a bare training loop.
* ``memory``     peak RSS of preparing and training on 1, 10 and 100 MB corpora (fresh processes).

Scripts under ``benchmarks/`` are reused where they exist (a source checkout); a suite that needs one
that is missing says so in its row instead of failing. The machine may be shared: quote the ratios
between rows of one run, and the load average recorded with them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEQPLAY_SHARED", REPO.parent / "shared"))
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"
WIKITEXT = SHARED / "corpora" / "wikitext-2"
RERUN_WINDOW = 64  # recurrent "without carried state": the window re-run per token (= training BPTT length)
SUITES = ("train", "target", "wordlm", "generate", "tokenizers", "overhead", "memory")
DEFAULT_SUITES = ("train", "generate", "tokenizers")

# The tuned recipe for `seqplay bench target` (docs/benchmarks.md has the measurements behind it):
# nanoGPT's model at 3x its peak learning rate with a slightly larger batch (16 x 64), a 20-step
# warmup, cosine over 1,200 steps, bf16 autocast where the CPU has it, and cheap evaluations on a
# fixed subset of windows every 100 steps (their cost counts in the wall time). Measured: val 1.878
# at step 1,000 = 1.02M tokens, against nanoGPT's 1.885 after 1.54M tokens; 44.1 s vs 109.3 s in one
# run (docs/benchmarks.md). Larger batches need more tokens (batch 48, lr 3e-3: 1.893 after 1.84M).
TARGET_MODEL = {"layers": 4, "heads": 4, "width": 128, "dropout": 0.0}
TARGET_PRESET: dict[str, Any] = {
    "arch": "transformer", "model": TARGET_MODEL, "context": 64, "batch_size": 16, "lr": 3e-3,
    "warmup": 20, "steps": 1200, "schedule": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.1,
    "eval_every": 100, "eval_batches": 6, "sample_every": 0, "checkpoint_every": 100_000, "keep_last": 1,
}
# nanoGPT config/train_shakespeare_char.py with its CPU overrides (README): batch 12, 2,000 iters.
NANOGPT_RECIPE: dict[str, Any] = {
    "arch": "transformer", "model": TARGET_MODEL, "context": 64, "batch_size": 12, "lr": 1e-3,
    "warmup": 100, "steps": 2000, "schedule": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.1,
    "eval_every": 250, "eval_batches": 20, "sample_every": 0, "checkpoint_every": 100_000, "keep_last": 1,
    "precision": "fp32",
}
# Reference figures measured by the lead on this machine (the task's baselines).
REFERENCE = {
    "nanogpt_seconds_to_1.886": 110.0,
    "word_language_model_tokens_per_s": 1_700.0,
    "nanogpt_sample_tokens_per_s": 370.0,
}
# Dense bf16 peak FLOP/s of GPUs we may meet, for MFU (CPU peaks are not published per VM: none).
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "RTX 4090": 165e12}


@dataclass
class Row:
    """One measured figure."""

    suite: str
    name: str
    value: float
    unit: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers
def environment(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Machine, device, torch version and thread count: recorded with every benchmark run."""
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
    return env


def _script(name: str) -> Any:
    """Load ``benchmarks/<name>.py`` (present in a source checkout) as a module, or None."""
    path = REPO / "benchmarks" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"seqplay_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _missing(suite: str, script: str) -> Row:
    return Row(suite, f"benchmarks/{script}.py", float("nan"), "", "skipped: needs a source checkout with benchmarks/")


def _runs_dir() -> str:
    return tempfile.mkdtemp(prefix="seqplay-bench-")


def _corpus(path: str | None) -> str:
    if path:
        if not Path(path).exists():
            raise ConfigError(f"corpus {path} does not exist; give a text file path")
        return path
    return str(SHAKESPEARE) if SHAKESPEARE.exists() else "grammar"


def transformer_flops_per_token(cfg: Any) -> float:
    """Training FLOPs per token (PaLM appendix B / nanoGPT): 6 N + 12 L width T (attention)."""
    n = cfg.num_params()
    return 6.0 * n + 12.0 * cfg.layers * cfg.width * cfg.context


def mfu(flops_per_token: float, tokens_per_s: float, device: str) -> tuple[float, float | None]:
    """(achieved FLOP/s, model FLOPs utilisation or None when the device's peak is unknown)."""
    achieved = flops_per_token * tokens_per_s
    if not device.startswith("cuda"):
        return achieved, None
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
    return achieved, (achieved / peak if peak else None)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else float("nan")


# -------------------------------------------------------------------------------------- suites
def bench_train(archs: Iterable[str] | None = None, steps: int = 20, corpus: str | None = None,
                threads: int | None = None, precision: str = "auto", device: str = "auto") -> list[Row]:
    """Training tokens/s of each language model at its default size, through the Trainer's own step."""
    from engine.training.config import TrainConfig
    from engine.models.registry import ARCHS
    from engine.training.trainer import Trainer

    source = _corpus(corpus)
    rows: list[Row] = []
    runs = _runs_dir()
    for arch in archs or [a for a, info in ARCHS.items() if info.task == "lm"]:
        cfg = TrainConfig(source=source, arch=arch, steps=10**9, eval_every=10**9, sample_every=0,
                          checkpoint_every=10**9, runs_dir=runs, threads=threads, precision=precision, device=device)
        t = Trainer(cfg, lambda e: None)
        t.setup()
        if not t.trainable:
            start = time.perf_counter()
            t.model.fit(t.data.train_ids)
            rate = len(t.data.train_ids) / (time.perf_counter() - start)
            rows.append(Row("train", arch, rate, "tokens/s", "fit (counting)"))
            continue
        t.model.train()
        for _ in range(3):  # warm-up: allocator, kernels, autocast caches
            t.train_step()
        times, tokens = [], 0
        for _ in range(steps):
            t0 = time.perf_counter()
            result = t.train_step()
            times.append(time.perf_counter() - t0)
            tokens = result[3] if result else tokens
        rate = tokens / _median(times)
        note = f"{t.precision}, {t.threads} thr, batch {cfg.batch_size}x{t.context}, {t.n_params:,} params"
        extra: dict[str, Any] = {"precision": t.precision, "threads": t.threads, "params": t.n_params,
                                 "ms_per_step": 1000 * _median(times), "device": t.device}
        if arch == "transformer":
            achieved, util = mfu(transformer_flops_per_token(t.model_config), rate, t.device)
            extra.update(flops_per_s=achieved, mfu=util)
            note += f", {achieved / 1e9:.1f} GFLOP/s" + (f", MFU {100 * util:.1f}%" if util is not None else "")
        rows.append(Row("train", arch, rate, "tokens/s", note, extra))
        if t.metrics is not None:
            t.metrics.close()
    mspeed = _script("models_speed")
    if mspeed is not None:  # seq2seq and MLM are trained outside the LM Trainer: bare loop timing
        for arch in ("seq2seq", "mlm"):
            prec = "bf16" if precision == "auto" and _cpu_bf16() else ("fp32" if precision == "auto" else precision)
            rows.append(Row("train", arch, mspeed.time_arch(arch, 32, 64, max(3, steps // 2), prec), "tokens/s",
                            f"{prec}, bare loop (benchmarks/models_speed.py)"))
    return rows


def _cpu_bf16() -> bool:
    from engine.device import cpu_has_bf16

    return cpu_has_bf16()


def time_to_target(settings: dict[str, Any], corpus: str, target: float, time_limit: float | None = None,
                   on_eval: Callable[[float, int, float], None] | None = None, **extra: Any) -> dict[str, Any]:
    """Train with ``settings`` until the validation loss reaches ``target``; time everything.

    Wall time runs from the start of ``Trainer.run`` (model build, data from the cache) to the
    evaluation that first reaches the target, evaluations and checkpoints included."""
    from engine.worker import protocol as P
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    cfg = TrainConfig(source=corpus, runs_dir=_runs_dir(), **{**settings, **extra})
    if time_limit:
        cfg.time_budget = time_limit
    reached: dict[str, Any] = {}
    evals: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    def emit(event: P.Event) -> None:
        if isinstance(event, P.EvalMetrics):
            now = time.perf_counter() - start
            evals.append((event.step, event.val_loss, now))
            if on_eval:
                on_eval(event.val_loss, event.step, now)
            if event.val_loss <= target and not reached:
                reached.update(step=event.step, seconds=now, val_loss=event.val_loss)

    def control(timeout: float) -> list[P.Command]:
        return [P.Stop(save=False)] if reached else []

    from engine.data.sources import prepare

    prepare(corpus, cfg.tokenizer, cfg.vocab_size, cfg.val_fraction)  # tokenise outside the timing (cached)
    start = time.perf_counter()
    trainer = Trainer(cfg, emit, control=control, pause_on_error=False)
    fin = trainer.run()
    total = time.perf_counter() - start
    return {
        "reached": bool(reached), "seconds": reached.get("seconds", float("nan")), "step": reached.get("step"),
        "val_loss": reached.get("val_loss", min((v for _, v, _ in evals), default=float("nan"))),
        "total_seconds": total, "steps_run": fin.step, "evals": evals,
        "precision": getattr(trainer, "precision", None), "threads": getattr(trainer, "threads", None),
        "tokens_per_step": cfg.batch_size * cfg.grad_accum * (cfg.context or 0),
    }


def bench_target(corpus: str | None = None, target: float = 1.88, baseline: bool = False,
                 threads: int | None = None, precision: str = "auto", **overrides: Any) -> list[Row]:
    source = _corpus(corpus)
    rows: list[Row] = []
    preset = {**TARGET_PRESET, **{k: v for k, v in overrides.items() if v is not None}}
    res = time_to_target(preset, source, target, threads=threads, precision=precision)
    note = (f"{'reached' if res['reached'] else 'NOT reached'} at step {res['step']}, val {res['val_loss']:.4f}; "
            f"{res['precision']}, {res['threads']} thr, batch {preset['batch_size']}, lr {preset['lr']}")
    rows.append(Row("target", f"transformer to val {target} (tuned preset)", res["seconds"], "s", note, res))
    if baseline:
        base = time_to_target(NANOGPT_RECIPE, source, target, threads=threads)
        if base["reached"]:
            rows.append(Row("target", f"transformer to val {target} (nanoGPT recipe)", base["seconds"], "s",
                            f"reached at step {base['step']}, val {base['val_loss']:.4f}; fp32, batch 12", base))
        else:  # nanoGPT's recipe ends near 1.886: its whole run is a lower bound on its time to the target
            rows.append(Row("target", "nanoGPT recipe, all 2,000 steps", base["total_seconds"], "s",
                            f"ended at val {base['val_loss']:.4f} (> {target}); fp32, batch 12", base))
        if res["reached"]:
            b = base["seconds"] if base["reached"] else base["total_seconds"]
            rows.append(Row("target", "tuned time / nanoGPT recipe time", res["seconds"] / b, "x",
                            "goal: <= 0.5" + ("" if base["reached"] else " (nanoGPT never reached the target: an upper bound)")))
    elif res["reached"]:
        ref = REFERENCE["nanogpt_seconds_to_1.886"]
        rows.append(Row("target", "fraction of nanoGPT's time (110 s, lead's figure)", res["seconds"] / ref, "x",
                        "goal: <= 0.5"))
    return rows


def _wlm_reference(arch: str, vocab: int, ids: Any, steps: int, threads: int) -> float:
    """Tokens/s of pytorch/examples word_language_model's loop: RNNModel (embedding, dropout, nn.LSTM,
    linear decoder), log_softmax + NLLLoss over the full vocabulary, plain SGD by hand (lr 20), clip
    0.25, hidden state repackaged every batch, fp32."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[arch]
    enc, drop = nn.Embedding(vocab, 200), nn.Dropout(0.2)
    rnn, dec = rnn_cls(200, 200, 2, dropout=0.2), nn.Linear(200, vocab)
    params = [*enc.parameters(), *rnn.parameters(), *dec.parameters()]
    bsz, bptt = 20, 35
    n = len(ids) // bsz
    data = torch.from_numpy(ids[: n * bsz].astype("int64")).view(bsz, n).t().contiguous()
    hidden: Any = None
    times = []
    for i in range(steps + 2):
        start = (i * bptt) % (n - bptt - 1)
        x, y = data[start : start + bptt], data[start + 1 : start + 1 + bptt].reshape(-1)
        t0 = time.perf_counter()
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        for p in params:
            p.grad = None
        out, hidden = rnn(drop(enc(x)), hidden)
        logits = dec(drop(out)).view(-1, vocab)
        loss = nn.functional.nll_loss(nn.functional.log_softmax(logits, dim=1), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.25)
        for p in params:
            p.data.add_(p.grad, alpha=-20.0)
        loss.item()  # the example reads the loss back every batch
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return bsz * bptt / _median(times)


def bench_wordlm(archs: Iterable[str] = ("lstm", "gru", "rnn"), steps: int = 10, threads: int | None = None,
                 precision: str = "auto") -> list[Row]:
    """Ours (Trainer default path) vs the word_language_model loop, word level on WikiText-2."""
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    train_file = WIKITEXT / "train.txt"
    if not train_file.exists():
        return [Row("wordlm", "wikitext-2", float("nan"), "", f"skipped: {train_file} not found")]
    rows: list[Row] = []
    runs = _runs_dir()
    for arch in archs:
        cfg = TrainConfig(source=str(train_file), arch=arch, tokenizer="word", vocab_size=33_278,
                          model={"layers": 2, "width": 200, "embed": 200, "dropout": 0.2}, context=35, batch_size=20,
                          steps=10**9, eval_every=10**9, sample_every=0, checkpoint_every=10**9, runs_dir=runs,
                          threads=threads, precision=precision)
        t = Trainer(cfg, lambda e: None)
        t.setup()
        t.model.train()
        for _ in range(2):
            t.train_step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            t.train_step()
            times.append(time.perf_counter() - t0)
        ours = 700 / _median(times)
        ref = _wlm_reference(arch, t.model_config.vocab_size, t.data.train_ids, steps, t.threads)
        torch_threads = t.threads
        rows.append(Row("wordlm", f"{arch} (seqplay)", ours, "tokens/s",
                        f"{t.precision}, {torch_threads} thr, vocab {t.model_config.vocab_size:,}, 2x200, 20x35"))
        rows.append(Row("wordlm", f"{arch} (word_language_model loop)", ref, "tokens/s", f"fp32, {torch_threads} thr"))
        rows.append(Row("wordlm", f"{arch} speed-up", ours / ref, "x", "goal: >= 1.5"))
        if t.metrics is not None:
            t.metrics.close()
    return rows


def bench_generate(tokens: int = 500, archs: Iterable[str] = ("rnn", "gru", "lstm", "transformer"),
                   threads: int = 1, repeats: int = 2) -> list[Row]:
    """Streaming tokens/s with carried state / KV cache vs re-running the context per token."""
    gs = _script("generation_speed")
    if gs is None:
        return [_missing("generate", "generation_speed")]
    import torch

    from engine.models.registry import build_model, make_config
    from engine.data.tokenizers import build_tokenizer

    tok = build_tokenizer("char", gs.corpus_text())
    rows: list[Row] = []
    for arch in archs:
        torch.manual_seed(0)
        model = build_model(arch, make_config(arch, tok.vocab_size)).eval()
        torch.set_num_threads(threads)
        gs.stream_rate(model, tok, 20)
        cached = gs.best_rate(lambda m=model: gs.stream_rate(m, tok, tokens), repeats)
        what = "KV cache" if arch == "transformer" else "carried state"
        recompute = []
        rerun = gs.recompute_rate if model.max_context else _rerun_window_rate
        for n in sorted({1, threads, os.cpu_count() or 1}):  # the baseline at its best thread count
            torch.set_num_threads(n)
            rerun(model, 10)
            recompute.append(gs.best_rate(lambda m=model, f=rerun: f(m, tokens), repeats))
        torch.set_num_threads(threads)
        base = max(recompute)
        rows.append(Row("generate", f"{arch} with {what}", cached, "tokens/s", f"{threads} thr, {tokens} tokens, sampled"))
        rows.append(Row("generate", f"{arch} re-running the context", base, "tokens/s",
                        "nanoGPT sample.py style, best threads" if model.max_context else
                        f"last {RERUN_WINDOW} tokens per step (makemore style), best threads"))
        rows.append(Row("generate", f"{arch} speed-up", cached / base, "x", "goal: >= 5 (transformer)" if arch == "transformer" else ""))
    return rows


def _rerun_window_rate(model: Any, tokens: int, window: int = RERUN_WINDOW) -> tuple[int, float]:
    """Stateless recurrent generation (makemore's): re-run the last ``window`` tokens for every token."""
    import torch

    idx = torch.zeros(1, 6, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(tokens):
            logits, _, _ = model(idx[:, -window:])
            idx = torch.cat([idx, torch.multinomial(logits[:, -1].softmax(-1), 1, generator=gen)], 1)
    return tokens, time.perf_counter() - t0


def bench_tokenizers(megabytes: float = 2.0, corpus: str | None = None) -> list[Row]:
    """Encoding MB/s (UTF-8 bytes of input per second) per tokenizer, learned on the same text."""
    from engine.data.tokenizers import build_tokenizer

    path = Path(corpus) if corpus else (WIKITEXT / "train.txt" if (WIKITEXT / "train.txt").exists() else SHAKESPEARE)
    if not path.exists():
        return [Row("tokenizers", "corpus", float("nan"), "", "skipped: no corpus file found")]
    text = path.read_text(encoding="utf-8")
    want = int(megabytes * 2**20)
    while len(text.encode("utf-8")) < want:
        text += text
    text = text.encode("utf-8")[:want].decode("utf-8", errors="ignore")
    size = len(text.encode("utf-8")) / 2**20
    rows = []
    for kind in ("char", "byte", "word", "bpe"):
        t0 = time.perf_counter()
        tok = build_tokenizer(kind, text)
        learn = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = tok.encode(text)
        enc = time.perf_counter() - t0
        rows.append(Row("tokenizers", kind, size / enc, "MB/s",
                        f"{size:.1f} MB of {path.name}, vocab {tok.vocab_size:,}, {len(ids) / enc / 1e6:.1f} M tokens/s, "
                        f"learning took {learn:.2f} s"))
    return rows


def bench_overhead(steps: int = 200, repeats: int = 2, arch: str = "transformer") -> list[Row]:
    """Worker (and TUI) throughput against a bare loop on the same model and batches."""
    wo = _script("worker_overhead")
    rows: list[Row] = []
    if wo is None:
        rows.append(_missing("overhead", "worker_overhead"))
    else:
        cfg = wo.make_config(arch, steps, None)
        bare, work = [], []
        for _ in range(repeats):  # interleaved: drifting load hits both alike
            bare.append(wo.bare_loop(cfg))
            work.append(wo.through_worker(cfg))
        b, w = max(bare), max(work)
        rows.append(Row("overhead", f"{arch} bare loop", b, "tokens/s", f"best of {repeats}, {steps} steps"))
        rows.append(Row("overhead", f"{arch} through the worker", w, "tokens/s", "spawned process, events read here"))
        rows.append(Row("overhead", "worker overhead", 100 * (1 - w / b), "%", "goal: < 5 (with the TUI)"))
    script = REPO / "benchmarks" / "tui_latency.py"
    if not script.exists():
        rows.append(_missing("overhead", "tui_latency"))
        return rows
    # The TUI script drives a real app and worker: run it in its own process, read its JSON lines.
    out = subprocess.run([sys.executable, str(script), "--steps", str(steps), "--presses", "20"],
                         capture_output=True, text=True, cwd=REPO, timeout=1800)
    found = {}
    for line in out.stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "measure" in item:
            found[item["measure"]] = item
    if "startup_to_first_screen_s" in found:
        m = found["startup_to_first_screen_s"]
        rows.append(Row("overhead", "TUI start until idle (headless harness)", m["median"], "s",
                        f"app built and every pane mounted; median of {m['repeats']}, max {m['max']:.2f} s", m))
    if "tmux_launch_to_first_paint_s" in found:
        m = found["tmux_launch_to_first_paint_s"]
        rows.append(Row("overhead", "TUI first screen as a user sees it", m["median"], "s",
                        f"`seqplay` in a tmux pane until the Data pane is painted; median of {m['repeats']}; goal: < 1", m))
    if "keypress_to_repaint_while_training_ms" in found:
        m = found["keypress_to_repaint_while_training_ms"]
        rows.append(Row("overhead", "TUI key press to repaint while training", m["median"], "ms",
                        f"p95 {m['p95']:.0f} ms over {m['n']} presses", m))
    if "training_tokens_per_s" in found:
        m = found["training_tokens_per_s"]
        rows.append(Row("overhead", "training under the TUI", m["under_tui"], "tokens/s",
                        f"headless `seqplay train` {m['headless']:,.0f} tokens/s", m))
        rows.append(Row("overhead", "TUI + worker overhead", 100 * (1 - m["ratio"]), "%", "goal: < 5", m))
    if not found:
        rows.append(Row("overhead", "benchmarks/tui_latency.py", float("nan"), "",
                        f"failed: {(out.stderr.strip() or 'no output')[-120:]}"))
    return rows


_MEMORY_PROBE = r"""
import json, resource, sys, time
from engine.training.config import TrainConfig
from engine.training.trainer import Trainer
t0 = time.perf_counter()
cfg = TrainConfig(source=sys.argv[1], arch=sys.argv[2], steps=int(sys.argv[3]), eval_every=10**9, sample_every=0,
                  checkpoint_every=10**9, runs_dir=sys.argv[4], eval_batches=2)
Trainer(cfg, lambda e: None).run()
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "seconds": time.perf_counter() - t0}))
"""


def bench_memory(sizes_mb: Iterable[float] = (1, 10, 100), arch: str = "transformer", steps: int = 5) -> list[Row]:
    """Peak RSS of a fresh process that prepares a corpus of each size and trains a few steps."""
    base = WIKITEXT / "train.txt" if (WIKITEXT / "train.txt").exists() else SHAKESPEARE
    if not base.exists():
        return [Row("memory", "corpus", float("nan"), "", "skipped: no corpus file found")]
    rows = []
    seed = base.read_bytes()
    with tempfile.TemporaryDirectory(prefix="seqplay-bench-mem-") as tmp:
        for mb in sizes_mb:
            path = Path(tmp) / f"corpus-{mb:g}MB.txt"
            want = int(mb * 2**20)
            with open(path, "wb") as fh:
                written = 0
                while written < want:
                    piece = seed[: want - written]
                    fh.write(piece)
                    written += len(piece)
            env = dict(os.environ, SEQPLAY_HOME=str(Path(tmp) / "home"), PYTHONPATH=str(REPO))
            out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), arch, str(steps), str(Path(tmp) / "runs")],
                                 capture_output=True, text=True, env=env, timeout=1800)
            if out.returncode != 0:
                rows.append(Row("memory", f"{mb:g} MB corpus", float("nan"), "MiB", f"failed: {out.stderr.strip()[-120:]}"))
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(Row("memory", f"{mb:g} MB corpus", res["peak_rss"] / 2**20, "MiB peak RSS",
                            f"{arch}, prepare (char) + {steps} steps, {res['seconds']:.1f} s", res))
            path.unlink()
    return rows


# ----------------------------------------------------------------------------------------- driver
RUNNERS: dict[str, Callable[..., list[Row]]] = {
    "train": bench_train, "target": bench_target, "wordlm": bench_wordlm, "generate": bench_generate,
    "tokenizers": bench_tokenizers, "overhead": bench_overhead, "memory": bench_memory,
}


def run_suites(suites: Iterable[str], options: dict[str, dict[str, Any]] | None = None,
               on_rows: Callable[[list[Row]], None] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run the named suites; -> {"environment": ..., "rows": [...]} (JSON-ready)."""
    suites = list(suites)
    unknown = [s for s in suites if s not in RUNNERS]
    if unknown:
        raise ConfigError(f"unknown benchmark suite {unknown[0]!r}; choose from {', '.join(SUITES)}")
    import torch

    from engine.device import choose_threads, pick_device

    torch.set_num_threads(choose_threads(threads))
    device = pick_device(((options or {}).get("train") or {}).get("device") or "auto")
    env = environment(threads=choose_threads(threads), device=device)
    rows: list[Row] = []
    for suite in suites:
        t0 = time.perf_counter()
        got = RUNNERS[suite](**(options or {}).get(suite, {}))
        for r in got:
            r.extra.setdefault("suite_seconds", round(time.perf_counter() - t0, 1))
        rows.extend(got)
        if on_rows:
            on_rows(got)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"environment": env, "rows": [_jsonable(asdict(r)) for r in rows]}


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def format_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if unit in ("x", "%"):
        return f"{value:.2f}{unit}" if unit == "x" else f"{value:+.1f}%"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
