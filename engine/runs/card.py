"""The experiment card: one portable folder that says exactly what a run was, and replay from it.

``write_card(run)`` writes::

    card.json       data fingerprint (sha256 of the text as seqplay reads it, size), tokenizer, architecture
                    and every model and training setting, seeds, the training machine (CPU, device,
                    threads, torch), library versions, sampler settings, a summary of the curves
    tokenizer.json  the tokenizer with its whole vocabulary (Tokenizer.save)
    curves.json     {"train": [{step, loss, lr, grad_norm, tokens_seen, elapsed}], "eval": [{step, val_loss, ...}]}
    train.csv, eval.csv   the same as CSV
    loss.svg, lr.svg      the curves as pictures (hand-written SVG polylines)
    samples.json    the samples printed during training and fixed-seed samples from the final model,
                    with the sampler settings that made them
    README.md       the same, for a person

``replay(card)`` retrains from the card (same settings and seed, on a corpus whose fingerprint must
match) and compares the training loss step by step, and the validation loss at each evaluation, with
the card's curves. On the same machine kind (CPU model, device, thread count, torch version: what
``engine.device.environment`` records) the curve must match exactly (bit for bit); elsewhere a
difference up to ``DEFAULT_TOLERANCE`` nats per step counts as a match, and the report says which mode
it used and why.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, DataError

FORMAT = "seqplay-card"
VERSION = 1
DEFAULT_TOLERANCE = 0.01  # nats per step when the machine kind differs
SAME_KIND_KEYS = ("cpu", "device", "gpu", "threads", "torch")
LIBRARIES = ("torch", "numpy", "tokenizers", "safetensors", "click", "seqplay")


# --------------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------------


def data_fingerprint(source: str) -> dict[str, Any]:
    """sha256 and size of the text seqplay trains on from ``source`` (a file or a built-in corpus)."""
    from engine.data.sources import resolve_source

    src = resolve_source(source)
    h, chars, size = hashlib.sha256(), 0, 0
    for chunk in src.chunks():
        data = chunk.encode("utf-8")
        h.update(data)
        chars += len(chunk)
        size += len(data)
    out = {"source": src.spec, "sha256": h.hexdigest(), "chars": chars, "utf8_bytes": size}
    if src.path is not None:
        out["file_bytes"] = src.path.stat().st_size
    return out


def library_versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def read_curves(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The run's training and evaluation curves from metrics.jsonl, one row per step (a step trained
    again after a resume keeps its last value)."""
    from engine.runs.folders import read_metrics

    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    for row in read_metrics(Path(run_dir)):
        kind, step = row.get("event"), row.get("step")
        if not isinstance(step, int):
            continue
        if kind == "step":
            train[step] = {k: row.get(k) for k in ("step", "loss", "lr", "grad_norm", "tokens_seen", "elapsed")}
        elif kind == "eval":
            evals[step] = {k: row.get(k) for k in ("step", "val_loss", "val_ppl", "val_bpc", "accuracy")}
    return {"train": [train[s] for s in sorted(train)], "eval": [evals[s] for s in sorted(evals)]}


def training_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    from engine.runs.folders import read_metrics

    return [{k: row.get(k) for k in ("step", "prompt", "text")} for row in read_metrics(Path(run_dir)) if row.get("event") == "sample"]


def _finite(xs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in xs if isinstance(y, int | float) and math.isfinite(y)]


def svg_chart(series: list[tuple], title: str, ylabel: str, width: int = 640, height: int = 320) -> str:
    """A line chart as SVG text: each series ``(name, colour, points[, stroke width])`` one polyline,
    axes with their range."""
    pts = [p for s in series for p in _finite(s[2])]
    left, right, top, bottom = 64, 16, 32, 40
    if not pts:
        pts = [(0.0, 0.0), (1.0, 1.0)]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    w, h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        yv, xv = y0 + frac * (y1 - y0), x0 + frac * (x1 - x0)
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<text x="{sx(xv):.1f}" y="{top + h + 16}" text-anchor="middle">{xv:.0f}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">step</text>')
    out.append(f'<text x="14" y="{top + h / 2}" text-anchor="middle" transform="rotate(-90 14 {top + h / 2})">{esc(ylabel)}</text>')
    for i, (name, colour, points, *rest) in enumerate(series):
        good = _finite(points)
        if good:
            line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{rest[0] if rest else 1.5}" points="{line}"/>')
        out.append(f'<text x="{left + w - 8}" y="{top + 16 + 14 * i}" text-anchor="end" fill="{colour}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else repr(row[c]) if isinstance(row[c], float) else row[c] for c in columns])


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")


def _training_environment(run_dir: Path) -> dict[str, Any] | None:
    """The machine the run trained on, as its newest snapshot recorded it (None: not recorded)."""
    from engine.runs.snapshots import list_snapshots

    for s in reversed(list_snapshots(run_dir)):
        try:
            env = json.loads(s.path.read_text(encoding="utf-8")).get("environment")
        except (OSError, ValueError):
            continue
        if isinstance(env, dict):
            return env
    return None


def same_kind(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether two environments are the same machine kind for bit-exact replay, and if not, why."""
    if not a:
        return False, "the card does not record the training machine"
    diffs = [f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in SAME_KIND_KEYS if a.get(k) != (b or {}).get(k)]
    return (not diffs), "; ".join(diffs)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def write_card(run: str | Path, out: str | Path | None = None, corpus: str | None = None, prompt: str = "",
               sample_tokens: int = 200, seeds: tuple[int, ...] = (0, 1, 2)) -> Path:
    """Write the card folder of ``run`` (default ``<run>/card``) and return it."""
    from engine.data.tokenizers import Tokenizer
    from engine.runs.checkpoint import read_meta, resolve_checkpoint
    from engine.runs.folders import find_run, inspect_run
    from engine.training.config import TrainConfig

    run_dir = find_run(str(run))
    info = inspect_run(run_dir)
    try:
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        raise CheckpointError(f"{run_dir.name} has no readable config.json; a card needs the run's settings") from None
    tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    ckpt = resolve_checkpoint(run_dir)
    meta = read_meta(ckpt)
    try:
        data = data_fingerprint(corpus or config.source)
    except DataError as err:
        raise DataError(f"the run's data cannot be read for its fingerprint ({err}); pass --corpus PATH with the same text") from None
    folder = Path(out) if out is not None else run_dir / "card"
    folder.mkdir(parents=True, exist_ok=True)

    curves = read_curves(run_dir)
    _write_json(folder / "curves.json", curves)
    _write_csv(folder / "train.csv", curves["train"], ("step", "loss", "lr", "grad_norm", "tokens_seen", "elapsed"))
    _write_csv(folder / "eval.csv", curves["eval"], ("step", "val_loss", "val_ppl", "val_bpc", "accuracy"))
    train_pts = [(r["step"], r["loss"]) for r in curves["train"]]
    val_pts = [(r["step"], r["val_loss"]) for r in curves["eval"]]
    (folder / "loss.svg").write_text(svg_chart([("train loss", "#1f77b4", train_pts, 1), ("validation loss", "#d62728", val_pts, 3)],
                                               f"{run_dir.name}: loss", "nats / token"), encoding="utf-8")
    (folder / "lr.svg").write_text(svg_chart([("learning rate", "#2ca02c", [(r["step"], r["lr"]) for r in curves["train"]])],
                                             f"{run_dir.name}: learning rate", "lr"), encoding="utf-8")
    tokenizer.save(folder / "tokenizer.json")

    samples = {"training": training_samples(run_dir), "final": final_samples(ckpt, prompt, sample_tokens, seeds)}
    _write_json(folder / "samples.json", samples)

    train_env = _training_environment(run_dir)
    card = {
        "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run": run_dir.name, "status": info.status, "steps": info.steps, "best_val_loss": info.best_val_loss,
        "best_val_bpc": info.best_val_bpc, "checkpoint": {"file": ckpt.name, "step": meta.get("step")},
        "data": data, "tokenizer": {"kind": tokenizer.name, "vocab_size": tokenizer.vocab_size, "file": "tokenizer.json"},
        "arch": config.arch, "params": meta.get("params"), "model_config": meta.get("model_config"),
        "train_config": config.to_dict(),
        "seeds": {"training": config.seed, "samples": list(seeds)},
        "training_environment": train_env, "card_environment": _environment_now(),
        "libraries": library_versions(),
        "sampler": samples["final"][0]["settings"] if samples["final"] else None,
        "curves": {"train_points": len(curves["train"]), "eval_points": len(curves["eval"]),
                   "last_train_loss": curves["train"][-1]["loss"] if curves["train"] else None,
                   "files": ["curves.json", "train.csv", "eval.csv", "loss.svg", "lr.svg"]},
    }
    _write_json(folder / "card.json", card)
    (folder / "README.md").write_text(_readme(card, samples), encoding="utf-8")
    return folder


def _environment_now() -> dict[str, Any]:
    from engine.device import environment

    return environment()


def final_samples(ckpt: Path, prompt: str, tokens: int, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """Fixed-seed samples from the run's model (language models; other tasks: none)."""
    import torch

    from engine.generation.generate import Generation
    from engine.generation.settings import SamplingSettings
    from engine.runs.checkpoint import load_model

    loaded = load_model(ckpt)
    if loaded.model.task != "lm":
        return []
    out, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # one token of a small model: one thread is fastest (and samples do not depend on it)
    try:
        for seed in seeds:
            settings = SamplingSettings(seed=seed, max_tokens=tokens)
            gen = Generation(loaded.model, loaded.tokenizer, prompt, settings)
            for _ in gen:
                pass
            out.append({"checkpoint": ckpt.name, "step": loaded.meta.get("step"), "prompt": prompt, "text": gen.text,
                        "settings": settings.to_dict()})
    finally:
        torch.set_num_threads(threads)
    return out


def _readme(card: dict[str, Any], samples: dict[str, Any]) -> str:
    env = card["training_environment"] or {}
    d = card["data"]
    lines = [
        f"# Experiment card: {card['run']}", "",
        f"- data: `{d['source']}`, {d['chars']:,} characters, sha256 `{d['sha256']}`",
        f"- tokenizer: {card['tokenizer']['kind']}, {card['tokenizer']['vocab_size']:,} tokens (`tokenizer.json`)",
        f"- model: {card['arch']}, {card['params'] or 0:,} parameters; settings in `card.json` (`model_config`, `train_config`)",
        f"- seed {card['seeds']['training']}; {card['steps']:,} steps; best validation loss "
        + ("-" if card["best_val_loss"] is None else f"{card['best_val_loss']:.4f} nats/token"),
        f"- trained on: {env.get('cpu', 'not recorded')}, {env.get('device', '?')}, {env.get('threads', '?')} threads, "
        f"torch {env.get('torch', '?')}",
        "", "![loss](loss.svg)", "", "![learning rate](lr.svg)", "",
        "Replay: `seqplay replay <this folder> [--corpus PATH]`", "", "## Samples (final model)", "",
    ]
    for s in samples["final"]:
        lines += [f"seed {s['settings']['seed']}, temperature {s['settings']['temperature']}:", "", "```", s["prompt"] + s["text"], "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------------


@dataclass
class ReplayRow:
    """One compared point: ``what`` is "train" (the step's loss) or "eval" (validation loss)."""

    what: str
    step: int
    card: float | None
    replay: float
    diff: float | None
    match: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReplayReport:
    mode: str  # exact | tolerance
    why: str
    tolerance: float
    run_dir: str = ""
    rows: list[ReplayRow] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(self.rows) and all(r.match for r in self.rows)

    @property
    def first_mismatch(self) -> ReplayRow | None:
        return next((r for r in self.rows if not r.match), None)

    @property
    def max_diff(self) -> float:
        return max((r.diff for r in self.rows if r.diff is not None), default=0.0)

    def summary(self) -> dict[str, Any]:
        bad = self.first_mismatch
        return {"event": "replay_done", "matched": self.matched, "mode": self.mode, "why": self.why,
                "tolerance": self.tolerance, "compared": len(self.rows), "max_diff": self.max_diff,
                "first_mismatch": bad.to_dict() if bad else None, "run_dir": self.run_dir}


def read_card(path: str | Path) -> dict[str, Any]:
    """card.json of a card folder (or the file itself), checked to be a seqplay card."""
    p = Path(path)
    p = p / "card.json" if p.is_dir() else p
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{p} does not exist; pass a folder written by `seqplay card`") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{p} is not readable JSON; pass a folder written by `seqplay card`") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a seqplay experiment card; pass a folder written by `seqplay card`")
    if card.get("version") != VERSION:
        raise CheckpointError(f"{p} is card version {card.get('version')}; this seqplay reads version {VERSION}")
    if not isinstance(card.get("train_config"), dict) or not isinstance(card.get("data"), dict):
        raise CheckpointError(f"{p} lacks its settings or data fingerprint; the card is incomplete")
    return card


def _card_curves(folder: Path) -> dict[str, dict[int, float]]:
    try:
        curves = json.loads((folder / "curves.json").read_text(encoding="utf-8"))
        train = {int(r["step"]): float(r["loss"]) for r in curves["train"] if r.get("loss") is not None}
        evals = {int(r["step"]): float(r["val_loss"]) for r in curves["eval"] if r.get("val_loss") is not None}
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{folder / 'curves.json'} is missing or malformed; the card cannot be replayed") from None
    return {"train": train, "eval": evals}


def replay(card_path: str | Path, corpus: str | None = None, runs_dir: str | None = None, steps: int | None = None,
           tolerance: float | None = None, on_row: Callable[[ReplayRow], None] | None = None) -> ReplayReport:
    """Retrain the card's run and compare its curves step by step (see the module docstring)."""
    from engine.training.config import TrainConfig
    from engine.training.trainer import Trainer
    from engine.worker import protocol as P

    folder = Path(card_path)
    folder = folder.parent if folder.is_file() else folder
    card = read_card(folder)
    curves = _card_curves(folder)
    cfg = dict(card["train_config"])
    if int(cfg.get("nproc") or 1) > 1:
        raise CheckpointError(f"the card's run trained data-parallel on {cfg['nproc']} processes; replay covers "
                              "single-process runs only")
    source = corpus or cfg.get("source") or ""
    try:
        data = data_fingerprint(source)
    except DataError as err:
        raise DataError(f"the card's data cannot be read ({err}); pass --corpus PATH with the same text") from None
    if data["sha256"] != card["data"].get("sha256"):
        raise DataError(f"{source} is not the card's data (sha256 {data['sha256'][:12]}... vs {str(card['data'].get('sha256'))[:12]}...); "
                        "pass --corpus PATH with the text the run trained on")
    env = card.get("training_environment") if isinstance(card.get("training_environment"), dict) else None
    if env and isinstance(env.get("threads"), int):
        cfg["threads"] = env["threads"]  # the thread count changes summation order: use the recorded one
    cfg.update(source=str(source), runs_dir=runs_dir, run_name=f"replay-{card.get('run', 'card')}", tensorboard=False)
    config = TrainConfig.from_dict(cfg)
    last = max(curves["train"], default=0)
    stop_at = min(last, steps) if steps else last
    if stop_at <= 0:
        raise CheckpointError("the card's training curve is empty (an n-gram is counted, not trained); there is nothing to replay")

    from engine.device import pick_device

    here = _environment_now()
    here.update(device=pick_device(config.device), threads=config.threads or here.get("threads"))
    exact, why = same_kind(env, here)
    if tolerance is not None:
        mode, tol, why = "tolerance", float(tolerance), f"--tolerance {tolerance} given"
    elif exact:
        mode, tol, why = "exact", 0.0, "same machine kind, threads and torch: the curve must match bit for bit"
    else:
        mode, tol = "tolerance", DEFAULT_TOLERANCE
    report = ReplayReport(mode=mode, why=why, tolerance=tol)

    def compare(what: str, step: int, value: float) -> None:
        want = curves[what].get(step)
        diff = None if want is None else abs(value - want)
        ok = want is not None and (value == want if mode == "exact" else diff <= tol)
        row = ReplayRow(what, step, want, value, diff, bool(ok))
        report.rows.append(row)
        if on_row is not None:
            on_row(row)

    def emit(event: Any) -> None:
        if isinstance(event, P.StepMetrics):
            for p in event.points:
                if p.step <= stop_at:
                    compare("train", p.step, p.loss)
        elif isinstance(event, P.EvalMetrics) and event.step in curves["eval"]:
            compare("eval", event.step, event.val_loss)
        elif isinstance(event, P.Started):
            report.run_dir = event.run_dir
        elif isinstance(event, P.ErrorEvent):
            report.why += f"; training reported: {event.message}"

    trainer: Trainer | None = None

    def control(timeout: float) -> list[Any]:
        return [P.Stop(save=True)] if trainer is not None and trainer.step >= stop_at else []

    trainer = Trainer(config, emit, control=control, pause_on_error=False)
    fin = trainer.run()
    report.run_dir = fin.run_dir or report.run_dir
    missing = [s for s in curves["train"] if s <= stop_at and s not in {r.step for r in report.rows if r.what == "train"}]
    for s in missing[:1]:  # training ended early (an error): the first step it never reached is a mismatch
        row = ReplayRow("train", s, curves["train"][s], float("nan"), None, False)
        report.rows.append(row)
        if on_row is not None:
            on_row(row)
    return report
