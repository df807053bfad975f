"""The perplexity table: every run on one corpus side by side, with the n-gram baseline row.

    perplexity = exp(mean cross-entropy per token);  bits/char = loss_nats * n_tokens / n_chars / ln 2

Perplexity depends on the tokenizer (a word is harder to guess than a character); bits per character
does not, so runs are compared on bits/char and a run whose validation bits/char is not below the
best n-gram's is flagged. Reading runs is torch-free (``engine.runs.folders``); ``train_table`` trains a set of
architectures one after another in-process with the Trainer, at a matched time or parameter budget.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

BASELINE_ARCH = "ngram"


def source_key(spec: str) -> str:
    """Runs are grouped by source: an existing file by its absolute path, a built-in corpus by its spec."""
    if spec and os.path.exists(os.path.expanduser(spec)):
        return str(Path(spec).expanduser().resolve())
    return spec


def _tokens_seen(run_dir: Path, summary: dict[str, Any]) -> int | None:
    if isinstance(summary.get("tokens_seen"), int):
        return summary["tokens_seen"]
    from engine.runs.checkpoint import latest_checkpoint, read_meta

    for path in (latest_checkpoint(run_dir), run_dir / "checkpoints" / "best.json"):
        if path is not None and Path(path).exists():
            try:
                value = read_meta(Path(path)).get("tokens_seen")
            except Exception:  # noqa: BLE001 - a damaged checkpoint just leaves the cell empty
                continue
            if isinstance(value, int):
                return value
    return None


def _row(info: Any) -> dict[str, Any]:
    import json

    try:
        summary = json.loads((info.path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    loss = info.best_val_loss
    return {
        "run": info.name,
        "arch": info.arch,
        "tokenizer": str(summary.get("tokenizer") or ""),
        "params": info.params,
        "steps": info.steps,
        "tokens_seen": _tokens_seen(info.path, summary),
        "wall_time": summary.get("wall_time") if isinstance(summary.get("wall_time"), int | float) else None,
        "val_loss": loss,
        "val_ppl": math.exp(loss) if loss is not None and loss < 700 else None,
        "val_bpc": info.best_val_bpc,
        "status": info.status,
    }


def perplexity_table(corpus: str | None = None, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """The table for runs on ``corpus`` (None: every corpus, one group each), best bits/char first.

    Each group has ``rows``, ``baseline`` (the best n-gram row's bits/char, or None) and each row a
    ``beats_baseline`` flag (None when there is no baseline or the run has no validation score)."""
    from engine.runs.folders import list_runs

    runs = [r for r in list_runs(runs_dir) if r.problem is None or r.best_val_loss is not None]
    want = source_key(corpus) if corpus else None
    groups: dict[str, dict[str, Any]] = {}
    for info in runs:
        key = source_key(info.source)
        if want is not None and key != want:
            continue
        groups.setdefault(key, {"source": info.source, "rows": []})["rows"].append(_row(info))
    for group in groups.values():
        rows = group["rows"]
        base = [r["val_bpc"] for r in rows if r["arch"] == BASELINE_ARCH and r["val_bpc"] is not None]
        baseline = min(base) if base else None
        group["baseline_bpc"] = baseline
        for r in rows:
            r["baseline"] = r["arch"] == BASELINE_ARCH
            if baseline is None or r["val_bpc"] is None or r["baseline"]:
                r["beats_baseline"] = None
            else:
                r["beats_baseline"] = r["val_bpc"] < baseline
        rows.sort(key=lambda r: (r["val_bpc"] is None, r["val_bpc"] if r["val_bpc"] is not None else 0.0))
    return {"analysis": "table", "corpus": corpus, "groups": list(groups.values())}


def width_for_params(arch: str, vocab_size: int, target: int, **overrides: Any) -> int:
    """The width whose model has the parameter count closest to ``target`` (other settings fixed)."""
    from engine.models.registry import make_config

    step = 8
    heads = make_config(arch, vocab_size, **overrides).__dict__.get("heads")
    if heads:
        step = math.lcm(step, heads)

    def count(width: int) -> int:
        return make_config(arch, vocab_size, **{**overrides, "width": width}).num_params()

    lo, hi = 1, 8192 // step
    while lo < hi:  # smallest multiple of `step` whose count reaches the target
        mid = (lo + hi) // 2
        if count(mid * step) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [w for w in (lo * step, (lo - 1) * step) if w >= step]
    return min(candidates, key=lambda w: abs(count(w) - target))


def train_table(corpus: str, archs: list[str], time_budget: float | None = None, params: int | None = None,
                steps: int | None = None, tokenizer: str = "char", runs_dir: str | None = None,
                baseline: bool = True, progress: Callable[[int, int, str], None] | None = None,
                cancel: threading.Event | None = None, **train_overrides: Any) -> dict[str, Any]:
    """Train each architecture on ``corpus`` one after another (same budget), plus the n-gram baseline
    if the corpus has none, then return the corpus's table. ``progress(done, total, message)`` reports
    each run (and its steps); ``cancel`` stops the run being trained (it keeps its checkpoint) and
    ends with ``AnalysisCancelled``."""
    from engine.insight.analyses import check
    from engine.models.registry import ARCHS
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer
    from engine.worker.protocol import StepMetrics, Stop

    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise ConfigError(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHS)}")
    if not time_budget and not steps:
        raise ConfigError("give a budget for each run: --time SECONDS or --steps N")
    todo = list(dict.fromkeys(archs))
    if baseline and BASELINE_ARCH not in todo:
        groups = perplexity_table(corpus, runs_dir)["groups"]
        if not any(r["baseline"] and r["val_bpc"] is not None for g in groups for r in g["rows"]):
            todo.insert(0, BASELINE_ARCH)
    vocab = None
    if params:
        from engine.data.sources import prepare

        vocab = prepare(corpus, tokenizer).tokenizer.vocab_size
    for k, arch in enumerate(todo):
        check(cancel)
        model: dict[str, Any] = {}
        if params and arch != BASELINE_ARCH and "width" in ARCHS[arch].config_cls.__dataclass_fields__:
            model["width"] = width_for_params(arch, vocab or 0, params)
        config = TrainConfig(source=corpus, arch=arch, tokenizer=tokenizer, model=model, runs_dir=runs_dir,
                             steps=steps, time_budget=time_budget, **train_overrides)
        label = f"training {arch}" + (f" (width {model['width']})" if "width" in model else "")
        if progress:
            progress(k, len(todo), label + " ...")

        def emit(event: Any, k: int = k, label: str = label) -> None:
            if progress and isinstance(event, StepMetrics) and event.points:
                progress(k, len(todo), f"{label}: step {event.points[-1].step}")

        def control(_timeout: float) -> list[Any]:
            return [Stop(save=True)] if cancel is not None and cancel.is_set() else []

        finished = Trainer(config.validate(), emit=emit, control=control if cancel is not None else None,
                           pause_on_error=False).run()
        check(cancel)
        if progress:
            progress(k + 1, len(todo), f"{arch}: {finished.reason} after {finished.step} steps, best val loss "
                     f"{finished.best_val_loss if finished.best_val_loss is None else round(finished.best_val_loss, 4)}")
    return perplexity_table(corpus, runs_dir)
