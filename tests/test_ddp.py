"""Data-parallel training (engine.training.distributed): 2 CPU processes with gloo follow single-process
training at the same global batch, write one run folder (rank 0), and resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.training.config import TrainConfig
from engine.training.distributed import check_world, run_distributed
from engine.training.trainer import Trainer
from engine.worker import protocol as P

TEXT = "the quick brown fox jumps over the lazy dog. " * 120


def _config(tmp_path: Path, arch: str, steps: int, name: str, model: dict) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return TrainConfig(
        source=str(corpus), arch=arch, model=model, context=16, batch_size=8, steps=steps, lr=3e-3,
        schedule="constant", eval_every=1000, sample_every=0, runs_dir=str(tmp_path / "runs"), run_name=name,
        threads=1, compile="off", precision="fp32",
    )


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return {d["step"]: d["loss"] for d in map(json.loads, lines) if d.get("event") == "step"}


@pytest.mark.parametrize("arch,model", [
    ("transformer", dict(layers=1, width=32, heads=2, dropout=0.0)),
    pytest.param("lstm", dict(layers=1, width=32, embed=16, dropout=0.0), marks=pytest.mark.slow),
])
def test_two_gloo_ranks_match_single_process_and_resume(tmp_path: Path, arch: str, model: dict) -> None:
    single = Trainer(_config(tmp_path, arch, 8, "single", model), lambda e: None, pause_on_error=False).run()
    assert single.reason == "done"
    reference = _losses(Path(single.run_dir))

    events: list[P.Event] = []
    fin = run_distributed(_config(tmp_path, arch, 4, "ddp", model), events.append, nproc=2)
    assert fin is not None and fin.reason == "done", [e for e in events if isinstance(e, P.ErrorEvent)]
    run_dir = Path(fin.run_dir)
    # One run folder (rank 0's); rank 1 created none.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "single"]
    assert (run_dir / "checkpoints" / "step-000004.json").exists()

    fin2 = run_distributed({}, events.append, nproc=2, resume_from=str(run_dir), overrides={"steps": 8})
    assert fin2 is not None and fin2.reason == "done" and fin2.step == 8
    ddp = _losses(run_dir)
    assert sorted(ddp) == sorted(reference) == list(range(1, 9))
    for step, loss in reference.items():
        assert ddp[step] == pytest.approx(loss, rel=1e-4, abs=1e-5), (step, ddp[step], loss)
    started = [e for e in events if isinstance(e, P.Started)]
    assert len(started) == 2  # rank 0 only, once per launch


def test_batch_must_split_over_processes() -> None:
    check_world(8, 2)
    with pytest.raises(ConfigError, match="multiple of 3"):
        check_world(8, 3)
