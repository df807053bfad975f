"""Small shared pieces for the training/worker/checkpoint/fault tests: a tiny corpus and tiny models."""

from __future__ import annotations

import time
from pathlib import Path

from engine.training.config import TrainConfig

TEXT = (
    "the cat sat on the mat. the dog ate the bone. a bird sang in the tree, and the cat watched it.\n"
    "when the rain came the dog ran home; the bird flew off and the mat was wet.\n"
) * 150  # ~26k characters: enough for a validation split and windows, quick to tokenise

SHAKESPEARE = Path(__file__).parents[2] / "shared/corpora/tinyshakespeare.txt"


def corpus(tmp_path: Path) -> str:
    path = tmp_path / "tiny.txt"
    if not path.exists():
        path.write_text(TEXT, encoding="utf-8")
    return str(path)


def tiny_config(tmp_path: Path, arch: str = "transformer", **kw) -> TrainConfig:
    model = {"transformer": dict(layers=1, width=32, heads=2, dropout=0.1),
             "lstm": dict(layers=1, width=32, embed=16, dropout=0.1),
             "gru": dict(layers=1, width=32, embed=16)}.get(arch, {})
    base = dict(source=corpus(tmp_path), arch=arch, model=model, context=16, batch_size=4, steps=20, eval_every=10,
                eval_batches=2, sample_every=0, warmup=2, runs_dir=str(tmp_path / "runs"), threads=1, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


class Recorder:
    """An emit callback that keeps every event."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if e.kind == kind]

    def losses(self):
        return {p.step: p.loss for e in self.of("steps") for p in e.points}


def wait_for_event(client, predicate, timeout: float = 60.0) -> list:
    """Poll a WorkerClient until an event satisfies ``predicate``; every event seen, in order."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in client.poll(0.1):
            seen.append(e)
            if predicate(e):
                return seen
    raise AssertionError(f"timed out; saw {[e.kind for e in seen]}")


def bounded(fn, seconds: float = 60.0):
    """``fn()`` in a thread: its value or the exception it raised; fails (instead of hanging the suite)
    if it does not return in time."""
    import threading

    out: dict[str, object] = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001
            out["error"] = err

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"{fn} hung for {seconds} s"
    return out


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``seqplay ARGS`` in-process: (exit code, stdout, stderr)."""
    from seqplay.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
