"""benchmarks/gpu_check.sh --dry-run: the GPU script's every step (tests marked gpu, ceilings, Transformer
sizes with and without torch.compile, LSTM/GRU, generation, time to target) on the CPU at toy sizes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .train_helpers import corpus

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_runs_every_step_and_writes_the_figures(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    res = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run", "--corpus", corpus(tmp_path),
                          "--wheels", str(tmp_path / "no-wheels")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "failed" not in (out / "gpu_tests.log").read_text().split("\n")[-2]
    result = json.loads((out / "gpu.json").read_text())
    assert result["dry_run"] and result["ceilings"]["bf16"] > 0
    suites = {r["suite"] for r in result["rows"]}
    assert suites == {"transformer", "recurrent", "generation", "target"}
    assert not [r for r in result["rows"] if "error" in r], [r for r in result["rows"] if "error" in r]
    compiled = [r for r in result["rows"] if r["suite"] == "transformer" and r["compile"]]
    assert compiled and all(r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in compiled)
    (target,) = [r for r in result["rows"] if r["suite"] == "target"]
    assert target["curve"] and target["steps"] > 0
    assert "| transformer |" in (out / "gpu.md").read_text()
