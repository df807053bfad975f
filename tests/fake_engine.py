"""A fake engine for tests and demos: the WorkerClient interface (start/send/poll/close), no torch.

It replays a deterministic, plausible event stream: ``StartTraining`` produces ``Started``, batched
``StepMetrics`` (``steps_per_poll`` steps per ``poll``), ``EvalMetrics``/``SampleText`` every
``eval_every`` steps and one ``Finished``; ``Generate`` streams ``GeneratedToken``s with top
alternatives and ends with one ``GenerationDone``. Pause/resume/step/stop/save/set_lr behave as the
protocol says. Nothing depends on the wall clock, so snapshots of the app driven by it are stable.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.runs.snapshot_index import scheduled
from engine.worker import protocol as P

SAMPLE_TEXT = "the cat sat on the mat and the dog sat on the log. "
ALPHABET = "etaoinshrdlu .,"


def fake_loss(step: int, offset: float = 0.0) -> float:
    """A decreasing, slightly wiggly loss curve (nats/token)."""
    return 1.1 + offset + 3.0 * math.exp(-step / 80.0) + 0.04 * math.sin(step / 3.0)


@dataclass
class _TrainJob:
    job: str
    run_dir: str
    total: int | None
    step: int = 0
    lr: float = 1e-3
    paused: bool = False
    single_steps: int = 0
    eval_every: int = 50
    best: float = float("inf")
    evals: deque = field(default_factory=lambda: deque(maxlen=2000))  # bounded: the fake soaks too
    config: dict = field(default_factory=dict)


@dataclass
class _GenJob:
    gen_id: str
    max_tokens: int
    step_mode: bool
    index: int = 0
    pending_steps: list[int | None] = field(default_factory=list)
    text: str = ""
    script: str = SAMPLE_TEXT  # what it "generates" (a snapshot's: fake_timeline_text of its step)
    top_k: int = 0  # > 0: alternatives past the k-th are reported as removed (p 0, their raw p)


class FakeEngine:
    """Deterministic stand-in for ``engine.worker.client.WorkerClient``."""

    def __init__(
        self,
        steps_per_poll: int = 5,
        tokens_per_poll: int = 4,
        eval_every: int = 50,
        write_runs: bool = True,
        crash_at_step: int | None = None,
        runs_dir: str | os.PathLike | None = None,
        start_delay_polls: int = 0,
        poll_sleep: float = 0.005,
        snapshot_base: int = 0,
    ):
        self.poll_sleep = poll_sleep
        self.snapshot_base = snapshot_base  # > 0: training writes snapshot JSONs on that schedule (0, b, 2b, 4b, ...)
        self.steps_per_poll = steps_per_poll
        self.tokens_per_poll = tokens_per_poll
        self.eval_every = eval_every
        self.write_runs = write_runs
        self.crash_at_step = crash_at_step
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.start_delay_polls = start_delay_polls
        self.started = False
        self.closed = False
        self.sent: list[P.Command] = []
        self._out: list[P.Event] = []
        self._train: _TrainJob | None = None
        self._gen: _GenJob | None = None
        self._jobs = 0
        self._dead = False

    # -- WorkerClient interface ------------------------------------------------------------------
    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def send(self, cmd: P.Command) -> None:
        if self._dead:
            return
        self.sent.append(cmd)
        handler = getattr(self, f"_on_{cmd.kind}", None)
        if handler is not None:
            handler(cmd)

    def poll(self, timeout: float = 0) -> list[P.Event]:
        if self.start_delay_polls > 0:
            self.start_delay_polls -= 1
        else:
            self._advance_training()
            self._advance_generation()
            self.advance_analysis()
            self.advance_lab()
        out, self._out = self._out, []
        if timeout > 0:  # like a queue read: a little wait (never busy-loop the caller)
            time.sleep(min(timeout, self.poll_sleep if out else 0.01))
        return out

    # -- training ------------------------------------------------------------------------------
    def _on_start(self, cmd: P.StartTraining) -> None:
        if self._train is not None:
            self._out.append(P.ErrorEvent(job=self._train.job, message="a run is already training; stop it first"))
            return
        cfg = dict(cmd.config)
        self._jobs += 1
        start_step = 0
        if cmd.resume_from:
            name = Path(cmd.resume_from).name
            run_json = Path(cmd.resume_from) / "run.json"
            if run_json.exists():
                start_step = int(json.loads(run_json.read_text()).get("steps", 0))
        else:
            name = cfg.get("run_name") or f"fake-{cfg.get('arch', 'model')}-{self._jobs}"
        base = self.runs_dir or _default_runs_dir()
        job = _TrainJob(
            job=f"train-{self._jobs}", run_dir=str(base / name), total=cfg.get("steps") or None,
            step=start_step, lr=float(cfg.get("lr") or 1e-3), eval_every=self.eval_every, config=cfg,
        )
        if job.total is not None and cmd.resume_from:
            job.total += start_step
        self._train = job
        self._out.append(P.Started(
            job=job.job, run_dir=job.run_dir, arch=cfg.get("arch", "transformer"), params=123_456,
            device="cpu", dtype="float32", train_tokens=90_000, val_tokens=10_000, vocab_size=65,
            total_steps=job.total, time_budget=cfg.get("time_budget"), start_step=start_step,
        ))
        self._out.append(P.StateChanged(job=job.job, state="running"))

    def _on_pause(self, cmd: P.Pause) -> None:
        if self._train and not self._train.paused:
            self._train.paused = True
            self._out.append(P.StateChanged(job=self._train.job, state="paused", reason="paused by user"))

    def _on_resume(self, cmd: P.Resume) -> None:
        if self._train and self._train.paused:
            self._train.paused = False
            self._out.append(P.StateChanged(job=self._train.job, state="running"))

    def _on_step(self, cmd: P.SingleStep) -> None:
        if self._train and self._train.paused:
            self._train.single_steps += 1

    def _on_stop(self, cmd: P.Stop) -> None:
        if self._train:
            self._finish("stopped")

    def _on_save(self, cmd: P.SaveNow) -> None:
        if self._train:
            t = self._train
            self._out.append(P.CheckpointWritten(job=t.job, step=t.step, path=f"{t.run_dir}/checkpoints/step-{t.step:06d}.safetensors"))

    def _on_set_lr(self, cmd: P.SetLearningRate) -> None:
        if self._train:
            self._train.lr = cmd.lr
            self._out.append(P.LogLine(job=self._train.job, text=f"learning rate set to {cmd.lr:g}"))

    def _on_sample(self, cmd: P.SampleNow) -> None:
        if self._train:
            self._out.append(self._sample(self._train))

    def _on_shutdown(self, cmd: P.Shutdown) -> None:
        if self._train:
            self._finish("stopped")

    def _sample(self, t: _TrainJob) -> P.SampleText:
        text = (SAMPLE_TEXT * 3)[t.step % len(SAMPLE_TEXT):][:80]
        return P.SampleText(job=t.job, step=t.step, prompt="", text=text, copied=text[4:24])

    def _advance_training(self) -> None:
        t = self._train
        if t is None:
            return
        n = self.steps_per_poll
        if t.paused:
            n, t.single_steps = t.single_steps, 0
        points = []
        for _ in range(n):
            if t.total is not None and t.step >= t.total:
                break
            t.step += 1
            if self.crash_at_step is not None and t.step >= self.crash_at_step:
                self._out.append(P.ErrorEvent(job="", message="the worker process died (fake crash); start training again", fatal=True))
                self._train = None
                self._dead = True
                return
            if self.snapshot_base and t.step == 1:
                self._write_snapshot(t, 0)
            if self.snapshot_base and scheduled(t.step, self.snapshot_base):
                self._write_snapshot(t, t.step)
            points.append(P.StepPoint(
                step=t.step, loss=fake_loss(t.step), lr=t.lr, grad_norm=1.0 + 0.5 * math.cos(t.step / 7.0),
                tokens_per_s=25_000.0, elapsed=t.step * 0.02, tokens_seen=t.step * 2048,
            ))
            if t.step % t.eval_every == 0:
                self._flush_points(t, points)
                points = []
                val = fake_loss(t.step, 0.08)
                best = val < t.best
                t.best = min(t.best, val)
                ev = P.EvalMetrics(job=t.job, step=t.step, val_loss=val, val_ppl=math.exp(val),
                                   val_bpc=val / math.log(2), train_loss=fake_loss(t.step), best=best)
                t.evals.append(ev.to_dict())
                self._out.append(ev)
                self._out.append(self._sample(t))
        self._flush_points(t, points)
        if t.total is not None and t.step >= t.total:
            self._finish("done")

    def _write_snapshot(self, t: _TrainJob, step: int) -> None:
        """The JSON half of a snapshot, as ``list_snapshots`` reads it (the fake loads no tensors)."""
        folder = Path(t.run_dir) / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"snap-{step:06d}.json").write_text(json.dumps(
            {"kind": "snapshot", "step": step, "tags": ["scheduled"], "last_val_loss": fake_loss(step, 0.08)}))

    def _flush_points(self, t: _TrainJob, points: list[P.StepPoint]) -> None:
        if points:
            self._out.append(P.StepMetrics(job=t.job, points=tuple(points)))

    def _finish(self, reason: str) -> None:
        t = self._train
        assert t is not None
        self._train = None
        if self.write_runs:
            self._write_run(t, reason)
        self._out.append(P.Finished(job=t.job, step=t.step, reason=reason,
                                    best_val_loss=None if math.isinf(t.best) else t.best, run_dir=t.run_dir))

    def _write_run(self, t: _TrainJob, reason: str) -> None:
        folder = Path(t.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "metrics.jsonl", "a") as f:
            for ev in t.evals:
                f.write(json.dumps(ev) + "\n")
        best_bpc = None if math.isinf(t.best) else t.best / math.log(2)
        summary = {"arch": t.config.get("arch", "transformer"), "source": t.config.get("source", "grammar"),
                   "params": 123_456, "steps": t.step, "best_val_loss": None if math.isinf(t.best) else t.best,
                   "best_val_bpc": best_bpc, "created": "2026-01-01T00:00:00", "updated": "2026-01-01T00:00:00",
                   "wall_time": t.step * 0.02, "status": reason}
        (folder / "run.json").write_text(json.dumps(summary))
        (folder / "config.json").write_text(json.dumps(t.config))

    # -- generation ----------------------------------------------------------------------------
    def _on_generate(self, cmd: P.Generate) -> None:
        if self._gen is not None:
            self._out.append(P.GenerationDone(job=self._gen.gen_id, reason="cancelled", text=self._gen.text))
        max_tokens = int(cmd.settings.get("max_tokens") or cmd.max_tokens)
        if cmd.beams > 1:  # a beam search: no tokens, its hypotheses in the Done (score = logprob / len**lp)
            self._gen = None
            beams = tuple(P.BeamText(text=SAMPLE_TEXT[k: k + max_tokens], logprob=-2.0 * (k + 1) * max_tokens / 10,
                                     score=-2.0 * (k + 1) * max_tokens / 10 / max_tokens ** cmd.length_penalty,
                                     tokens=max_tokens, reason="max_tokens") for k in range(cmd.beams))
            self._out.append(P.GenerationDone(job=cmd.gen_id, reason="max_tokens", text=beams[0].text, beams=beams))
            return
        at = (cmd.source or "").rpartition("@")[2]
        script = fake_timeline_text(int(at), max_tokens) if "@" in (cmd.source or "") and at.isdigit() else SAMPLE_TEXT
        self._gen = _GenJob(gen_id=cmd.gen_id, max_tokens=max_tokens, step_mode=cmd.step_mode, script=script,
                            top_k=int(cmd.settings.get("top_k") or 0))

    def _on_gen_step(self, cmd: P.GenerateStep) -> None:
        if self._gen is not None and self._gen.gen_id == cmd.gen_id:
            self._gen.pending_steps.append(cmd.choose)

    def _on_cancel_generation(self, cmd: P.CancelGeneration) -> None:
        g = self._gen
        if g is not None and g.gen_id == cmd.gen_id:
            self._gen = None
            self._out.append(P.GenerationDone(job=g.gen_id, reason="cancelled", text=g.text))

    def _advance_generation(self) -> None:
        g = self._gen
        if g is None:
            return
        if g.step_mode:
            choices, g.pending_steps = g.pending_steps, []
        else:
            choices = [None] * self.tokens_per_poll
        for choose in choices:
            if g.index >= g.max_tokens:
                break
            self._out.append(self._token(g, choose))
        if g.index >= g.max_tokens:
            self._gen = None
            self._out.append(P.GenerationDone(job=g.gen_id, reason="max_tokens", text=g.text, tokens_per_s=400.0))

    def _token(self, g: _GenJob, choose: int | None) -> P.GeneratedToken:
        i = g.index
        ch = chr(choose) if choose is not None else g.script[i % len(g.script)]
        prob = 0.25 + 0.7 * ((i * 37) % 10) / 10
        others = [c for c in ALPHABET if c != ch][: 4]
        rest = (1.0 - prob)
        top = [P.TokenAlternative(token=ord(ch), text=ch, prob=prob, raw_prob=prob * 0.9)]
        top += [P.TokenAlternative(token=ord(c), text=c, prob=rest / (2 ** (k + 1)), raw_prob=0.9 * rest / (2 ** (k + 1)))
                for k, c in enumerate(others)]
        top.sort(key=lambda a: -a.prob)
        if g.top_k:  # as the engine: the kept ones, then those the filter removed (processed p 0)
            top = top[: g.top_k] + [replace(a, prob=0.0) for a in top[g.top_k :]]
        g.index += 1
        g.text += ch
        chosen = next(a for a in top if a.token == ord(ch))
        return P.GeneratedToken(job=g.gen_id, index=i, token=ord(ch), text=ch, prob=chosen.prob, raw_prob=chosen.raw_prob,
                                entropy=1.0 + (i % 5) / 5, top=tuple(top))


    # -- analyses (Analyze / CancelAnalysis) -------------------------------------------------------
    analysis_polls = 3  # polls an analysis takes: one AnalysisProgress each, then AnalysisDone

    def _on_analyze(self, cmd: P.Analyze) -> None:
        self._analysis = {"cmd": cmd, "done": 0}

    def _on_cancel_analysis(self, cmd: P.CancelAnalysis) -> None:
        a = getattr(self, "_analysis", None)
        if a is not None and a["cmd"].job == cmd.job:
            self._analysis = None
            self._out.append(P.AnalysisDone(job=cmd.job, analysis=a["cmd"].params.analysis, reason="cancelled"))

    def advance_analysis(self) -> None:
        a = getattr(self, "_analysis", None)
        if a is None:
            return
        cmd, total = a["cmd"], self.analysis_polls
        if a["done"] < total:
            self._out.append(P.AnalysisProgress(job=cmd.job, done=a["done"], total=total, message=f"unit {a['done'] + 1}"))
            a["done"] += 1
            return
        self._analysis = None
        self._out.append(P.AnalysisDone(job=cmd.job, analysis=cmd.params.analysis, reason="done",
                                        data=fake_analysis(cmd), seconds=0.1 * total))


# -- lab jobs (Compare / StageView / Timeline / CancelLab) --------------------------------------------
lab_polls = 2  # polls a lab job takes before its LabDone (a timeline sends one sample per poll)
FAKE_SNAPSHOTS = (0, 4, 8, 16, 20)


def _on_lab(self, cmd: P.Command) -> None:
    self._lab = {"cmd": cmd, "done": 0}


def _on_cancel_lab(self, cmd: P.CancelLab) -> None:
    lab = getattr(self, "_lab", None)
    if lab is not None and lab["cmd"].job == cmd.job:
        self._lab = None
        self._out.append(P.LabDone(job=cmd.job, lab=lab["cmd"].kind, reason="cancelled", message="cancelled"))


def advance_lab(self) -> None:
    lab = getattr(self, "_lab", None)
    if lab is None:
        return
    cmd = lab["cmd"]
    if isinstance(cmd, P.Timeline):
        if lab["done"] < len(FAKE_SNAPSHOTS):
            step = FAKE_SNAPSHOTS[lab["done"]]
            self._out.append(P.TimelineSample(job=cmd.job, step=step, tags=fake_tags(step), val_loss=fake_loss(step, 0.08),
                                              text=fake_timeline_text(step, cmd.max_tokens)))
            lab["done"] += 1
            self._out.append(P.LabProgress(job=cmd.job, done=lab["done"], total=len(FAKE_SNAPSHOTS), message=f"step {step}"))
            return
    elif lab["done"] < self.lab_polls:
        lab["done"] += 1
        self._out.append(P.LabProgress(job=cmd.job, done=lab["done"], total=self.lab_polls + 1, message="working"))
        return
    self._lab = None
    self._out.append(P.LabDone(job=cmd.job, lab=cmd.kind, reason="done", data=fake_lab(cmd), seconds=0.2))


FakeEngine.lab_polls = lab_polls
FakeEngine._on_compare = _on_lab
FakeEngine._on_stage_view = _on_lab
FakeEngine._on_timeline = _on_lab
FakeEngine._on_write_card = _on_lab
FakeEngine._on_cancel_lab = _on_cancel_lab
FakeEngine.advance_lab = advance_lab


def fake_tags(step: int) -> tuple[str, ...]:
    return {16: ("scheduled", "best"), 20: ("last",)}.get(step, ("scheduled",))


def fake_timeline_text(step: int, n: int = 40) -> str:
    """Noise at step 0 turning into the sample text as the step grows (deterministic)."""
    good = min(1.0, step / 16)
    return "".join(c if (i * 7919 % 100) < good * 100 else ALPHABET[(i * 31 + step) % len(ALPHABET)]
                   for i, c in enumerate((SAMPLE_TEXT * 3)[:n]))


def fake_lab(cmd: P.Command) -> dict:
    """A plausible result of a lab job, shaped as ``engine.worker.lab_jobs`` makes it."""
    if isinstance(cmd, P.Compare):
        same = cmd.settings_a == cmd.settings_b and (cmd.run_b or cmd.run_a) == cmd.run_a
        text = (SAMPLE_TEXT * 3)[: cmd.max_tokens]
        d = None if same else min(len(text), 11)
        other = text if same else text[:d] + " and the mouse ran up the clock"[: cmd.max_tokens - d]

        def side(label: str, body: str, settings: dict, lp: float) -> dict:
            head = body if d is None else body[:d]
            return {"label": label, "text": body, "tokens": [ord(c) for c in body], "reason": "max_tokens",
                    "mean_logprob": lp, "mean_raw_logprob": lp - 0.1, "logprobs": [lp] * len(body), "settings": settings,
                    "approximate": False, "head": head, "rest": body[len(head):]}

        div = None if d is None else {"index": d, "u": 0.8123, "a_token": ord(text[d]), "b_token": ord(other[d])}
        return {"event": "compare", "seed": cmd.seed, "prompt": cmd.prompt, "divergence": div,
                "a": side(cmd.run_a, text, cmd.settings_a, -1.234),
                "b": side(cmd.run_b or cmd.run_a, other, cmd.settings_b, -1.876)}
    if isinstance(cmd, P.StageView):
        def dist(ps: list[float]) -> list[dict]:
            return [{"id": ord(c), "text": c, "p": p} for c, p in zip("e ta", ps) if p > 0]

        before = [0.4, 0.3, 0.2, 0.1]
        stages = [
            {"stage": "temperature", "before": dist(before), "after": dist([0.5, 0.3, 0.15, 0.05]), "removed": [],
             "boosted": [ord("e")], "kept": 4, "entropy_after": 1.14},
            {"stage": "top_k", "before": dist([0.5, 0.3, 0.15, 0.05]), "after": dist([0.625, 0.375, 0, 0]),
             "removed": [ord("t"), ord("a")], "boosted": [ord("e"), ord(" ")], "kept": 2, "entropy_after": 0.66},
        ]
        return {"position": cmd.position, "stages": stages, "final": dist([0.625, 0.375]), "order": ["temperature", "top_k"],
                "text": SAMPLE_TEXT[: cmd.position], "prompt": cmd.prompt}
    if isinstance(cmd, P.WriteCard):
        folder = Path(cmd.out or Path(cmd.run) / "card")
        return {"run": cmd.run, "folder": str(folder), "card": str(folder / "card.json")}
    samples = [{"step": s, "tags": list(fake_tags(s)), "val_loss": fake_loss(s, 0.08), "text": fake_timeline_text(s)}
               for s in FAKE_SNAPSHOTS]
    return {"run": getattr(cmd, "run", ""), "prompt": getattr(cmd, "prompt", ""), "seed": 0, "samples": samples}


def fake_analysis(cmd: P.Analyze) -> dict:
    """A small, plausible result dict for each analysis (what engine.insight.render draws)."""
    kind = cmd.params.analysis
    tokens = list(SAMPLE_TEXT[:24])
    if kind == "gradients":
        d = list(range(1, 31))
        return {"analysis": kind, "mode": "at initialisation", "source": "grammar", "curves": [
            {"label": a, "distances": d, "norm": [0.5 * r**k for k in d]} for a, r in (("rnn", 0.6), ("lstm", 0.85))]}
    if kind == "attention":
        n = 8
        return {"analysis": kind, "kind": "self", "tokens": tokens[:n], "prompt": "".join(tokens[:n]), "layers": [[
            [[1.0 / (i + 1) if j <= i else 0.0 for j in range(n)] for i in range(n)] for _ in range(4)]]}
    if kind == "gates":
        wave = [round(math.sin(i / 3), 4) for i in range(len(tokens))]
        return {"analysis": kind, "arch": "lstm", "layer": 0, "width": 8, "tokens": tokens, "pattern_chosen": True,
                "gates": {"f": [round(0.5 + 0.4 * w, 4) for w in wave]}, "units": {"h0": wave},
                "search": {"pattern": "words", "signal": [float(c.isalpha()) for c in tokens],
                           "best": [{"unit": "h0", "corr": 0.8}]}}
    if kind == "surprisal":
        return {"analysis": kind, "run": "fake", "tokens": tokens, "losses": [None] + [1.0 + (i % 4) for i in range(1, len(tokens))],
                "mean_loss": 2.5, "perplexity": math.exp(2.5), "bits_per_char": 3.6}
    if kind == "table":
        base = cmd.params.train == "ngram"
        rows = [{"run": "fake-lstm", "arch": "lstm", "tokenizer": "char", "params": 123456, "steps": 100,
                 "tokens_seen": 51200, "wall_time": 2.0, "val_loss": 1.4, "val_ppl": 4.05, "val_bpc": 2.02,
                 "status": "finished", "baseline": False, "beats_baseline": True if base else None}]
        if base:
            rows.append({**rows[0], "run": "fake-ngram", "arch": "ngram", "params": 0, "val_bpc": 2.5,
                         "baseline": True, "beats_baseline": None})
        return {"analysis": kind, "corpus": cmd.params.corpus, "groups": [
            {"source": cmd.params.corpus or "grammar", "baseline_bpc": 2.5 if base else None, "rows": rows}]}
    return {"analysis": "memorization", "source": "fake", "training_chars": 1000, "n": 8, "mean_ngram_share": 0.5,
            "max_span_length": 4, "samples": [{"sample": "the cat", "copied_mask": "1111000", "span_start": 0,
                                                "span_length": 4, "ngram_share": 0.5}]}

def _default_runs_dir() -> Path:
    from engine.runs.folders import runs_root

    return runs_root()


def fake_snapshots(run: Path, steps: dict[int, list[str]]) -> None:
    """Snapshot JSONs as the listing reads them (the fake engine loads nothing)."""
    import json

    (run / "snapshots").mkdir(exist_ok=True)
    for step, tags in steps.items():
        (run / "snapshots" / f"snap-{step:06d}.json").write_text(json.dumps(
            {"kind": "snapshot", "step": step, "tags": tags, "last_val_loss": 2.0 - step / 100}))
