"""The benchmark suite behind ``seqplay bench``: every figure with the machine it was taken on.

Suites (each returns ``Row``s; ``run_suites`` adds the environment and writes JSON):

* ``ceiling``    the machine's dense matmul throughput (2048 x 2048, bf16 and fp32), measured in this
                 run: the peaks every MFU figure is taken against.
* ``train``      training tokens/s of every language model at its default size, through the Trainer
                 (its default fast path), with achieved FLOP/s and MFU against the measured ceiling
                 of the precision it ran in.
* ``target``     time for the fast defaults (``engine.training.presets``: what ``seqplay train FILE``
                 runs) to reach a whole-split validation loss on a corpus; ``--baseline`` also runs
                 nanoGPT's shakespeare_char CPU recipe *re-implemented in seqplay's Trainer*
                 (``NANOGPT_RECIPE`` says what differs from nanoGPT's own train.py).
* ``wordlm``     word LMs (whitespace protocol, split folder: WikiText-2) against pytorch/examples
                 word_language_model's training loop *re-implemented here* (``_wlm_reference``).
* ``generate``   streaming tokens/s with the KV cache / carried state, and re-running the context.
* ``tokenizers`` encoding MB/s per tokenizer.
* ``overhead``   the worker's (and, where benchmarks/tui_latency.py exists, the TUI's) cost against
                 a bare training loop.
* ``memory``     peak RSS of preparing and training on 1, 10 and 100 MB corpora (fresh processes).

Corpora are never guessed: a suite that needs one uses ``--corpus`` / ``--word-corpus`` or the
shared default ($SEQPLAY_SHARED/corpora), and a missing one is a one-line error before anything
runs. No reference time is built in: a ratio is always between two rows of the same run. The
machine may be shared: quote ratios between rows of one run, and the load average recorded with them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.device import environment  # noqa: F401 - re-exported for the suites
from engine.errors import ConfigError
from engine.training.presets import TRANSFORMER_FAST

REPO = Path(__file__).resolve().parents[1]
# the shared read-only material: $SEQPLAY_SHARED, else a ``shared`` folder beside the checkout (or
# beside its parent, for a git worktree under the project folder)
SHARED = Path(os.environ.get("SEQPLAY_SHARED") or next(
    (p for p in (REPO.parent / "shared", REPO.parents[1] / "shared") if p.is_dir()), REPO.parent / "shared"))
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"
WIKITEXT = SHARED / "corpora" / "wikitext-2"
RERUN_WINDOW = 64  # recurrent "without carried state": the window re-run per token (= training BPTT length)
SUITES = ("ceiling", "train", "target", "wordlm", "generate", "tokenizers", "overhead", "memory")
DEFAULT_SUITES = ("ceiling", "train", "generate", "tokenizers")
CORPUS_SUITES = ("train", "target", "tokenizers", "overhead", "memory")  # need a text corpus (--corpus)
WORD_SUITES = ("wordlm",)  # need a split folder (--word-corpus)

TARGET_MODEL = {"layers": 4, "heads": 4, "width": 128, "dropout": 0.0}
# nanoGPT config/train_shakespeare_char.py with the README's CPU overrides (batch 12, block 64,
# 4 layers, 4 heads, 128 wide, dropout 0, 2,000 iterations, lr_decay_iters 2,000, eval_iters 20),
# re-implemented in seqplay's Trainer. Same: model shape, lr 1e-3 warmup 100 cosine to 1e-4 over
# 2,000 steps, weight decay 0.1 on matrices, clip 1.0, fp32. Different from nanoGPT's train.py:
# AdamW betas (0.9, 0.95) (nanoGPT's config: 0.99), torch's fused AdamW, seqplay's data sampler and
# its own (whole-split) evaluation instead of 20 random batches per split, no torch.compile.
NANOGPT_RECIPE: dict[str, Any] = {
    "arch": "transformer", "model": TARGET_MODEL, "context": 64, "batch_size": 12, "lr": 1e-3,
    "warmup": 100, "steps": 2000, "schedule": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.1,
    "sample_every": 0, "checkpoint_every": 100_000, "keep_last": 1, "precision": "fp32",
}
TARGET_EVAL_EVERY = 100  # the target suite evaluates the whole validation split this often


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
def _script(name: str) -> Any:
    """Load ``benchmarks/<name>.py`` as a module, or None where it is missing."""
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


def resolve_corpus(path: str | None, default: Path, option: str, folder: bool = False) -> str:
    """The corpus a suite uses: ``path`` (a file, split folder or built-in corpus name) or the shared
    default; a missing one is a one-line ConfigError, never a silent switch to another corpus."""
    from engine.data.sources import resolve_source
    from engine.errors import DataError

    if path:
        try:
            src = resolve_source(path)
        except DataError as err:
            raise ConfigError(f"{option} {path}: {err}") from None
        if folder and not src.splits:
            raise ConfigError(f"{option} {path} is not a split folder; give a folder holding train.txt, valid.txt and test.txt")
        return path
    if not default.exists():
        what = "a split folder (train.txt, valid.txt, test.txt)" if folder else "a text file"
        raise ConfigError(f"no corpus: {default} is not there; pass {option} with {what} (or set SEQPLAY_SHARED)")
    return str(default)


def matmul_ceiling(dtype: str = "bf16", n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Dense matmul FLOP/s (best of ``repeats`` n x n x n products, 2 n^3 FLOPs each) in ``dtype``,
    with torch's current thread count: the peak MFU is measured against."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


_CEILINGS: dict[tuple[str, str, int], float] = {}


def ceiling(dtype: str, device: str = "cpu") -> float:
    """``matmul_ceiling`` measured once per (dtype, device, thread count) in this process."""
    import torch

    key = (dtype, device, torch.get_num_threads())
    if key not in _CEILINGS:
        _CEILINGS[key] = matmul_ceiling(dtype, device=device)
    return _CEILINGS[key]


def bench_ceiling(device: str = "auto", threads: int | None = None) -> list[Row]:
    """The bf16 and fp32 matmul ceilings of this machine, now."""
    import torch

    from engine.device import choose_threads, pick_device

    dev = pick_device(device)
    torch.set_num_threads(choose_threads(threads))
    rows = []
    for dtype in ("bf16", "fp32"):
        value = ceiling(dtype, dev)
        rows.append(Row("ceiling", f"{dtype} matmul 2048^3", value / 1e9, "GFLOP/s",
                        f"{dev}, {torch.get_num_threads()} thr, best of 5", {"flops_per_s": value, "dtype": dtype}))
    return rows


def transformer_flops_per_token(cfg: Any) -> float:
    """Training FLOPs per token (PaLM appendix B / nanoGPT): 6 N + 12 L width T (attention)."""
    n = cfg.num_params()
    return 6.0 * n + 12.0 * cfg.layers * cfg.width * cfg.context


def flops_per_token(model: Any, model_config: Any) -> float:
    """Training FLOPs per token of any model: 6 x the parameters used in matrix products (every
    matrix but embedding tables that are only looked up), plus 12 L width T for attention."""
    from torch import nn

    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    lookup = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in linear)
    matmul = sum(p.numel() for p in model.parameters() if p.dim() >= 2) - lookup
    attn = 12.0 * model_config.layers * model_config.width * model_config.context if model_config.__class__.__name__ == "TransformerConfig" else 0.0
    return 6.0 * matmul + attn


def mfu(flops_per_token: float, tokens_per_s: float, precision: str, device: str = "cpu") -> tuple[float, float]:
    """(achieved FLOP/s, model FLOPs utilisation against this run's measured ``precision`` ceiling)."""
    achieved = flops_per_token * tokens_per_s
    return achieved, achieved / ceiling("bf16" if precision == "bf16" else ("fp16" if precision == "fp16" else "fp32"), device)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else float("nan")


# -------------------------------------------------------------------------------------- suites
def bench_train(archs: Iterable[str] | None = None, steps: int = 20, corpus: str | None = None,
                threads: int | None = None, precision: str = "auto", device: str = "auto") -> list[Row]:
    """Training tokens/s of each language model at its default size, through the Trainer's own step."""
    import torch

    from engine.models.registry import ARCHS
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    source = resolve_corpus(corpus, SHAKESPEARE, "--corpus")
    rows: list[Row] = []
    runs = _runs_dir()
    chosen = list(archs or [a for a, info in ARCHS.items() if info.task == "lm"])
    runs_of: list[tuple[str, str, dict[str, Any]]] = [(a, a, {}) for a in chosen]
    if "transformer" in chosen:  # and the shape `seqplay train FILE` actually trains (engine.training.presets)
        fast = {k: v for k, v in TRANSFORMER_FAST.items() if k in ("context", "batch_size")}
        runs_of.append(("transformer (fast defaults)", "transformer", {**fast, "model": {**TRANSFORMER_FAST["model"], "dropout": 0.0}}))
    for label, arch, extra_cfg in runs_of:
        cfg = TrainConfig(source=source, arch=arch, steps=10**9, eval_every=10**9, sample_every=0,
                          checkpoint_every=10**9, runs_dir=runs, threads=threads, precision=precision, device=device,
                          **extra_cfg)
        t = Trainer(cfg, lambda e: None)
        t.setup()
        if not t.trainable:
            start = time.perf_counter()
            t.model.fit(t.data.train_ids)
            rate = len(t.data.train_ids) / (time.perf_counter() - start)
            rows.append(Row("train", label, rate, "tokens/s", "fit (counting)"))
            continue
        t.model.train()
        for _ in range(3):  # warm-up: allocator, kernels, autocast caches
            t.train_step()
        times, tokens = [], 0
        sync = torch.cuda.synchronize if str(t.device).startswith("cuda") else (lambda: None)
        for _ in range(steps):  # a GPU step is asynchronous (no host sync in the guard): wait for it
            t0 = time.perf_counter()
            result = t.train_step()
            sync()
            times.append(time.perf_counter() - t0)
            tokens = result[3] if result else tokens
        rate = tokens / _median(times)
        achieved, util = mfu(flops_per_token(t.model, t.model_config), rate, t.precision, t.device)
        note = (f"{t.precision}, {t.threads} thr, batch {cfg.batch_size}x{t.context}, {t.n_params:,} params, "
                f"{achieved / 1e9:.1f} GFLOP/s, MFU {100 * util:.1f}% of the {t.precision} ceiling")
        extra: dict[str, Any] = {"precision": t.precision, "threads": t.threads, "params": t.n_params,
                                 "ms_per_step": 1000 * _median(times), "device": t.device,
                                 "flops_per_s": achieved, "mfu": util}
        rows.append(Row("train", label, rate, "tokens/s", note, extra))
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

    ``seconds``: training time (optimizer steps, ``Trainer.elapsed``) until the evaluation that first
    reaches the target; ``wall_seconds``: wall time from the start of ``Trainer.run`` (model build,
    data from the cache, evaluations and checkpoints included) to that evaluation."""
    from engine.data.sources import prepare
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer
    from engine.worker import protocol as P

    cfg = TrainConfig(source=corpus, runs_dir=_runs_dir(), **{**settings, **extra})
    if time_limit:
        cfg.time_budget = time_limit
    reached: dict[str, Any] = {}
    evals: list[tuple[int, float, float, float]] = []
    train_seconds = [0.0]
    start = time.perf_counter()

    def emit(event: P.Event) -> None:
        if isinstance(event, P.StepMetrics) and event.points:
            train_seconds[0] = event.points[-1].elapsed
        if isinstance(event, P.EvalMetrics):
            now = time.perf_counter() - start
            evals.append((event.step, event.val_loss, train_seconds[0], now))
            if on_eval:
                on_eval(event.val_loss, event.step, now)
            if event.val_loss <= target and not reached:
                reached.update(step=event.step, seconds=train_seconds[0], wall_seconds=now, val_loss=event.val_loss)

    def control(timeout: float) -> list[P.Command]:
        return [P.Stop(save=False)] if reached else []

    prepare(corpus, cfg.tokenizer, cfg.vocab_size, cfg.val_fraction)  # tokenise outside the timing (cached)
    start = time.perf_counter()
    trainer = Trainer(cfg, emit, control=control, pause_on_error=False)
    fin = trainer.run()
    total = time.perf_counter() - start
    return {
        "reached": bool(reached), "seconds": reached.get("seconds", float("nan")),
        "wall_seconds": reached.get("wall_seconds", float("nan")), "step": reached.get("step"),
        "val_loss": reached.get("val_loss", min((v for _, v, _, _ in evals), default=float("nan"))),
        "total_seconds": total, "train_seconds": trainer.elapsed, "steps_run": fin.step, "evals": evals,
        "precision": getattr(trainer, "precision", None), "threads": getattr(trainer, "threads", None),
        "tokens_per_step": cfg.batch_size * cfg.grad_accum * (cfg.context or 0),
    }


def whole_split_batches(corpus: str, batch_size: int, context: int, tokenizer: str = "char") -> int:
    """Evaluation batches that cover the whole validation split of ``corpus``."""
    from engine.data.sources import prepare

    val = len(prepare(corpus, tokenizer).val_ids)
    return max(1, math.ceil(val / (batch_size * context)))


def bench_target(corpus: str | None = None, target: float = 1.88, baseline: bool = False,
                 threads: int | None = None, precision: str = "auto", **overrides: Any) -> list[Row]:
    """The fast defaults vs (optionally) the nanoGPT recipe re-implementation, to a whole-split
    validation loss; both evaluate the whole split every ``TARGET_EVAL_EVERY`` steps."""
    from engine.data.sources import prepare
    from engine.training.config import TrainConfig
    from engine.training.presets import fast_defaults

    source = resolve_corpus(corpus, SHAKESPEARE, "--corpus")
    data = prepare(source, "char")
    fast, _ = fast_defaults(TrainConfig(source=source), set(), len(data.train_ids), len(data.val_ids))
    preset = {k: getattr(fast, k) for k in (*TRANSFORMER_FAST, "steps")}
    preset.update({k: v for k, v in overrides.items() if v is not None})
    preset.update(eval_every=TARGET_EVAL_EVERY, eval_batches=whole_split_batches(source, preset["batch_size"], 64),
                  sample_every=0, checkpoint_every=100_000, keep_last=1)
    res = time_to_target(preset, source, target, threads=threads, precision=precision)
    rows: list[Row] = []
    note = (f"{'reached' if res['reached'] else 'NOT reached'} at step {res['step']}, whole-split val {res['val_loss']:.4f}; "
            f"{res['precision']}, {res['threads']} thr, batch {preset['batch_size']}, lr {preset['lr']}; "
            f"wall incl. setup and evaluations {res['wall_seconds']:.1f} s")
    rows.append(Row("target", f"fast defaults to val {target} (training time)", res["seconds"], "s", note, res))
    if baseline:
        recipe = dict(NANOGPT_RECIPE, eval_every=TARGET_EVAL_EVERY,
                      eval_batches=whole_split_batches(source, NANOGPT_RECIPE["batch_size"], 64))
        base = time_to_target(recipe, source, target, threads=threads)
        name = "nanoGPT shakespeare_char CPU recipe, re-implemented in seqplay's Trainer"
        if base["reached"]:
            rows.append(Row("target", f"{name} to val {target} (training time)", base["seconds"], "s",
                            f"reached at step {base['step']}, whole-split val {base['val_loss']:.4f}; fp32, batch 12", base))
        else:  # the recipe ends above the target: its whole run is a lower bound on its time to it
            rows.append(Row("target", f"{name}, all 2,000 steps (training time)", base["train_seconds"], "s",
                            f"ended at whole-split val {base['val_loss']:.4f} (> {target}); fp32, batch 12", base))
        if res["reached"]:
            b = base["seconds"] if base["reached"] else base["train_seconds"]
            rows.append(Row("target", "fast defaults time / recipe re-implementation time", res["seconds"] / b, "x",
                            "same run, same evaluation" + ("" if base["reached"] else "; the recipe never reached the target: an upper bound")))
    return rows


def _wlm_reference(arch: str, vocab: int, ids: Any, steps: int, threads: int,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Tokens/s of pytorch/examples word_language_model's ``main.py`` training loop, re-implemented
    here (the example is not a dependency): RNNModel = embedding, dropout 0.2, ``nn.LSTM``/``GRU``/
    ``RNN`` 2 x 200 with dropout 0.2, linear decoder (untied); ``log_softmax`` + ``nll_loss`` over
    the full vocabulary; plain SGD by hand (lr 20); clip 0.25; hidden state repackaged every batch;
    batch 20 x BPTT 35 streams (``batchify``); the loss read back every batch; fp32. ``clock``:
    wall time by default, ``time.process_time`` to count this process' CPU time only."""
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
        t0 = clock()
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
            times.append(clock() - t0)
    return bsz * bptt / _median(times)


WORDLM_MODEL = {"layers": 2, "width": 200, "embed": 200, "dropout": 0.2}


def _wordlm_trainer(corpus: str, arch: str, precision: str, threads: int | None, runs: str, **model: Any) -> Any:
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    cfg = TrainConfig(source=corpus, arch=arch, tokenizer="whitespace", model={**WORDLM_MODEL, **model}, context=35,
                      batch_size=20, steps=10**9, eval_every=10**9, sample_every=0, checkpoint_every=10**9,
                      runs_dir=runs, threads=threads, precision=precision)
    t = Trainer(cfg, lambda e: None)
    t.setup()
    t.model.train()
    return t


def _step_rate(t: Any, steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
    for _ in range(2):
        t.train_step()
    times = []
    for _ in range(steps):
        t0 = clock()
        t.train_step()
        times.append(clock() - t0)
    return 20 * 35 / _median(times)


def adaptive_vs_full(corpus: str, seconds: float, threads: int | None = None, arch: str = "lstm") -> list[Row]:
    """The same word LM with the full and the adaptive softmax, each trained for ``seconds`` of
    training time in fp32 (the adaptive module runs in fp32 anyway), then scored on the whole
    validation split."""
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer

    rows = []
    for output in ("softmax", "adaptive"):
        cfg = TrainConfig(source=corpus, arch=arch, tokenizer="whitespace", model={**WORDLM_MODEL, "output": output},
                          context=35, batch_size=20, steps=None, time_budget=seconds, eval_every=10**9, eval_batches=1,
                          sample_every=0, checkpoint_every=10**9, keep_last=1, runs_dir=_runs_dir(), threads=threads,
                          precision="fp32")
        t = Trainer(cfg, lambda e: None, pause_on_error=False)
        fin = t.run()
        val = float(t.task.split_loss(t.data.val_ids))
        rate = t.tokens_seen / max(t.elapsed, 1e-9)
        rows.append(Row("wordlm", f"{arch} {output} output: whole-split validation perplexity after {seconds:g} s",
                        math.exp(min(val, 700)), "ppl",
                        f"{t.precision}, {t.threads} thr, {fin.step} steps, {rate:,.0f} tokens/s, {t.n_params:,} params",
                        {"tokens_per_s": rate, "steps": fin.step, "val_loss": val, "params": t.n_params}))
    return rows


def bench_wordlm(archs: Iterable[str] = ("lstm", "gru", "rnn"), steps: int = 10, threads: int | None = None,
                 corpus: str | None = None, seconds: float = 60.0) -> list[Row]:
    """seqplay's Trainer (fp32 and its default precision) vs the word_language_model loop
    re-implementation, word level (whitespace protocol) on a split folder (WikiText-2)."""
    source = resolve_corpus(corpus, WIKITEXT, "--word-corpus", folder=True)
    rows: list[Row] = []
    runs = _runs_dir()
    ref_name = "word_language_model loop (re-implemented here, fp32)"
    for arch in archs:
        fp32 = _wordlm_trainer(source, arch, "fp32", threads, runs)
        auto = _wordlm_trainer(source, arch, "auto", threads, runs)
        vocab, thr = fp32.model_config.vocab_size, fp32.threads
        ours32, ours, ref = [], [], []
        for _ in range(2):  # interleaved: drifting load hits all three alike
            ours32.append(_step_rate(fp32, steps))
            ours.append(_step_rate(auto, steps))
            ref.append(_wlm_reference(arch, vocab, fp32.data.train_ids, steps, thr))
        o32, o, r = max(ours32), max(ours), max(ref)
        unk = fp32.data.unk_share()
        base = f"{thr} thr, vocab {vocab:,} (validation <unk> {unk:.1%}), 2x200, batch 20 x BPTT 35"
        rows.append(Row("wordlm", f"{arch} (seqplay, fp32)", o32, "tokens/s", base))
        rows.append(Row("wordlm", f"{arch} (seqplay, {auto.precision})", o, "tokens/s", base))
        rows.append(Row("wordlm", f"{arch} {ref_name}", r, "tokens/s", base))
        rows.append(Row("wordlm", f"{arch} speed-up at fp32", o32 / r, "x", "same precision; goal: >= 1.5"))
        rows.append(Row("wordlm", f"{arch} speed-up, default precision", o / r, "x", f"{auto.precision}; goal: >= 3"))
        for t in (fp32, auto):
            if t.metrics is not None:
                t.metrics.close()
    if seconds > 0:
        rows.extend(adaptive_vs_full(source, seconds, threads))
    return rows


def bench_generate(tokens: int = 500, archs: Iterable[str] = ("rnn", "gru", "lstm", "transformer"),
                   threads: int = 1, repeats: int = 2) -> list[Row]:
    """Streaming tokens/s with carried state / KV cache vs re-running the context per token."""
    gs = _script("generation_speed")
    if gs is None:
        return [_missing("generate", "generation_speed")]
    import torch

    from engine.data.tokenizers import build_tokenizer
    from engine.models.registry import build_model, make_config

    tok = build_tokenizer("char", gs.corpus_text())
    rows: list[Row] = []
    for arch in archs:
        if arch == "transformer":
            rows += _transformer_generation(gs, tok, tokens, threads, repeats)
            continue
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
        rows.append(Row("generate", f"{arch} speed-up", cached / base, "x"))
    return rows


def _transformer_generation(gs: Any, tok: Any, tokens: int, threads: int, repeats: int) -> list[Row]:
    """The Transformer's exact decoding within its context (KV cache) and past it (the window
    recomputed), the approximate slide, and nanoGPT's ``GPT.generate`` loop, all at ``threads``,
    alternated in one sitting (``benchmarks/generation_speed.transformer_rows``)."""
    from engine.device import choose_threads
    from engine.models.native import status

    wide = choose_threads(None)  # what `seqplay generate` gives the window recompute by default
    found = gs.transformer_rows(tok, tokens, threads, repeats, wide)
    rates = {name: row for name, row in found.items() if "tokens_per_s" in row}
    within, past, slide, nanogpt = list(rates)[:4]
    rows = [Row("generate", within, rates[within]["tokens_per_s"], "tokens/s", f"{threads} thr, sampled, decode step: {status()}; goal: >= 5,000"),
            Row("generate", past, rates[past]["tokens_per_s"], "tokens/s", f"{threads} thr, the default decoding"),
            Row("generate", slide, rates[slide]["tokens_per_s"], "tokens/s", f"{threads} thr, --window slide"),
            Row("generate", nanogpt, rates[nanogpt]["tokens_per_s"], "tokens/s",
                f"{threads} thr, GPT.generate's loop re-implemented (crop, forward, softmax, multinomial, cat)")]
    ratio = rates[past]["tokens_per_s"] / rates[nanogpt]["tokens_per_s"]
    rows.append(Row("generate", "transformer exact past the context / nanoGPT loop", ratio, "x", "same threads; goal: >= 2"))
    if len(rates) == 6:  # the window on the idle cores (seqplay generate's default) and nanoGPT on as many
        past_wide, nano_wide = list(rates)[4:]
        rows += [Row("generate", past_wide, rates[past_wide]["tokens_per_s"], "tokens/s",
                     f"cached tokens on {threads} thr, the window on {wide}: seqplay generate's default; goal: >= 870"),
                 Row("generate", nano_wide, rates[nano_wide]["tokens_per_s"], "tokens/s", f"{wide} thr"),
                 Row("generate", f"transformer exact past the context / nanoGPT loop, {wide} threads",
                     rates[past_wide]["tokens_per_s"] / rates[nano_wide]["tokens_per_s"], "x", "goal: >= 2")]
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
    from engine.data.sources import resolve_source
    from engine.data.tokenizers import build_tokenizer

    src = resolve_source(resolve_corpus(corpus, SHAKESPEARE, "--corpus"))
    path = src.path or Path(src.spec)
    text = src.text()
    want = int(megabytes * 2**20)
    while len(text.encode("utf-8")) < want:
        text += text
    text = text.encode("utf-8")[:want].decode("utf-8", errors="ignore")
    size = len(text.encode("utf-8")) / 2**20
    rows = []
    for kind in ("char", "byte", "word", "bpe", "whitespace"):
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


def bench_overhead(steps: int = 200, repeats: int = 2, arch: str = "transformer", corpus: str | None = None) -> list[Row]:
    """Worker (and TUI) throughput against a bare loop on the same model and batches."""
    wo = _script("worker_overhead")
    rows: list[Row] = []
    if wo is None:
        rows.append(_missing("overhead", "worker_overhead"))
    else:
        cfg = wo.make_config(arch, steps, None, corpus=corpus)
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
    if "error" in found.get("tmux_launch_to_first_paint_s", {}):
        rows.append(Row("overhead", "TUI first screen as a user sees it", float("nan"), "s",
                        f"failed: {found.pop('tmux_launch_to_first_paint_s')['error']}"))
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
        threads = (f" ({m['threads_under_tui']} thread(s) under the TUI, {m['threads_headless']} headless: each picks the"
                   " idle cores when it starts)" if m.get("threads_under_tui") else "")
        rows.append(Row("overhead", "training under the TUI", m["under_tui"], "tokens/s",
                        f"headless `seqplay train` {m['headless']:,.0f} tokens/s, same model{threads}", m))
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
def peak_rss():
    # VmHWM is this process' own peak; Linux keeps ru_maxrss across execve, so under a big parent
    # (`bench all`) ru_maxrss reports the parent's peak instead
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"peak_rss": peak_rss(), "seconds": time.perf_counter() - t0}))
"""


def bench_memory(sizes_mb: Iterable[float] = (1, 10, 100), arch: str = "transformer", steps: int = 5,
                 corpus: str | None = None) -> list[Row]:
    """Peak RSS of a fresh process that prepares a corpus of each size (``corpus`` repeated) and
    trains a few steps."""
    from engine.data.sources import resolve_source

    rows = []
    seed = resolve_source(resolve_corpus(corpus, SHAKESPEARE, "--corpus")).text().encode("utf-8")
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
    "ceiling": bench_ceiling, "train": bench_train, "target": bench_target, "wordlm": bench_wordlm, "generate": bench_generate,
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

    options = options or {}
    for suite in suites:  # every corpus is found (or refused in one line) before anything runs
        opts = options.get(suite, {})
        if suite in CORPUS_SUITES:
            resolve_corpus(opts.get("corpus"), SHAKESPEARE, "--corpus")
        if suite in WORD_SUITES:
            resolve_corpus(opts.get("corpus"), WIKITEXT, "--word-corpus", folder=True)
    torch.set_num_threads(choose_threads(threads))
    device = pick_device((options.get("train") or {}).get("device") or "auto")
    env = environment(threads=choose_threads(threads), device=device)
    rows: list[Row] = []
    for suite in suites:
        t0 = time.perf_counter()
        got = RUNNERS[suite](**options.get(suite, {}))
        for r in got:
            r.extra.setdefault("suite_seconds", round(time.perf_counter() - t0, 1))
        rows.extend(got)
        if on_rows:
            on_rows(got)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["matmul_ceilings_gflops"] = {f"{d} {dev} {t} thr": round(v / 1e9, 1) for (d, dev, t), v in _CEILINGS.items()}
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
