"""The GPU paths, run for real: every architecture in bf16 on the device against fp32 on the CPU, the
KV cache and carried state on the device, checkpoints crossing devices, out-of-memory, DDP on one GPU.

Marked ``gpu`` and left out of the default run. ``benchmarks/gpu_check.sh`` runs them on a CUDA machine;
``benchmarks/gpu_check.sh --dry-run`` (and ``tests/test_gpu_check.py``) runs the same tests on the CPU
(``SEQPLAY_TEST_DEVICE=cpu``, CPU bf16 autocast standing in for the GPU's) so the script is proven end to
end without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.device import autocast
from engine.models.registry import ARCHS, build_model, make_config

from .train_helpers import corpus

DEVICE = os.environ.get("SEQPLAY_TEST_DEVICE", "cuda")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="no CUDA device (set SEQPLAY_TEST_DEVICE=cpu for the dry run)"),
]

V = 40
SMALL = dict(embed=32, width=64, layers=2, heads=4, context=32, dropout=0.0)


def _batch(arch: str, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    task = ARCHS[arch].task
    if task == "seq2seq":
        src = torch.randint(0, V, (8, 12), generator=g)
        tgt = torch.randint(0, V, (8, 10), generator=g)
        return (src, tgt[:, :-1], tgt[:, 1:])
    x = torch.randint(0, V, (8, 33), generator=g)
    if task == "mlm":
        x = x[:, :32]
        targets = torch.full_like(x, -100)
        targets[:, ::5] = x[:, ::5]
        return (x, targets)
    return (x[:, :-1], x[:, 1:])


def _train_losses(arch: str, device: str, precision: str, steps: int = 5) -> list[float]:
    torch.manual_seed(0)
    model = build_model(arch, make_config(arch, V, **SMALL)).to(device)
    batch = tuple(t.to(device) for t in _batch(arch))
    if not any(p.requires_grad for p in model.parameters()):
        return []
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        with autocast(device, precision):
            _, loss, _ = model(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


TRAINABLE = [a for a, info in ARCHS.items() if info.family != "count"]


@pytest.mark.parametrize("arch", TRAINABLE)
def test_every_architecture_trains_in_bf16_on_the_device_like_fp32_on_cpu(arch):
    ref = _train_losses(arch, "cpu", "fp32")
    got = _train_losses(arch, DEVICE, "bf16")
    assert len(ref) == len(got) == 5
    assert got[-1] < got[0], f"{arch} did not learn on {DEVICE}: {got}"
    for step, (a, b) in enumerate(zip(ref, got, strict=True)):
        # bf16 keeps ~3 significant digits; five Adam steps on the same batch drift a little further
        assert abs(a - b) <= 0.03 * abs(a) + 0.02, f"{arch} step {step}: cpu fp32 {a:.4f} vs {DEVICE} bf16 {b:.4f}"


def test_count_model_scores_the_same_on_the_device():
    arch = next(a for a, info in ARCHS.items() if info.family == "count")
    model = build_model(arch, make_config(arch, V))
    x, y = _batch("transformer")
    model.fit(torch.cat([x.flatten(), y[:, -1]]).numpy())
    with torch.no_grad():
        _, ref, _ = model(x, y)
        dev = model.to(DEVICE)
        _, got, _ = dev(x.to(DEVICE), y.to(DEVICE))
    assert abs(float(ref) - float(got)) < 1e-4


@pytest.mark.parametrize("arch", ["transformer", "lstm", "gru", "rnn"])
def test_incremental_generation_on_the_device_equals_recomputation(arch):
    torch.manual_seed(0)
    model = build_model(arch, make_config(arch, V, **SMALL)).to(DEVICE).eval()
    x = torch.randint(0, V, (2, 24), device=DEVICE)
    with torch.no_grad():
        full, _, _ = model(x)
        state = None
        steps = []
        for t in range(x.size(1)):
            logits, _, state = model(x[:, t:t + 1], state=state, use_cache=True)
            steps.append(logits)
    inc = torch.cat(steps, dim=1)
    torch.testing.assert_close(inc.float(), full.float(), atol=1e-4, rtol=1e-4)


def _seqplay(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "seqplay", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


TINY = ["--arch", "transformer", "--layers", "1", "--width", "32", "--heads", "2", "--context", "16",
        "--batch-size", "4", "--eval-every", "5", "--threads", "1"]


def _run_dir(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def test_checkpoint_saved_on_the_device_loads_on_cpu_and_back(tmp_path):
    runs = tmp_path / "runs"
    res = _seqplay("train", corpus(tmp_path), *TINY, "--steps", "10", "--device", DEVICE, "--runs-dir", str(runs))
    assert res.returncode == 0, res.stderr
    run = _run_dir(runs)
    out = _seqplay("generate", str(run), "-p", "the ", "-n", "20", "--seed", "1", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("the ")
    # and back: a CPU run resumed on the device
    runs2 = tmp_path / "runs2"
    res = _seqplay("train", corpus(tmp_path), *TINY, "--steps", "10", "--device", "cpu", "--runs-dir", str(runs2))
    assert res.returncode == 0, res.stderr
    res = _seqplay("resume", str(_run_dir(runs2)), "--steps", "20", "--device", DEVICE)
    assert res.returncode == 0, res.stderr
    from engine.runs.checkpoint import load_model

    loaded = load_model(_run_dir(runs2), device=DEVICE)
    assert next(loaded.model.parameters()).device.type == torch.device(DEVICE).type


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="a real out-of-memory needs CUDA's allocator limit")
def test_out_of_memory_on_the_device_is_one_line_and_keeps_the_checkpoint(tmp_path):
    from engine.runs.checkpoint import latest_checkpoint, load_model
    from engine.training.trainer import Trainer
    from engine.worker import protocol as P

    from .train_helpers import Recorder, tiny_config

    cfg = tiny_config(tmp_path, steps=1000, eval_every=5, device=DEVICE, precision="bf16")
    rec = Recorder()
    state = {"squeezed": False}

    def control(timeout):
        steps = [p.step for e in rec.of("steps") for p in e.points]
        if not state["squeezed"] and steps and max(steps) >= 12:
            state["squeezed"] = True
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1e-6)  # every new allocation now fails for real
        return []

    try:
        fin = Trainer(cfg, rec, control=control).run()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert fin.reason == "error"
    (err,) = [e for e in rec.events if isinstance(e, P.ErrorEvent)]
    assert "out of memory" in err.message and "\n" not in err.message
    run = Path(fin.run_dir)
    assert latest_checkpoint(run) is not None
    assert load_model(run, device="cpu").model is not None


@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="DDP on one GPU is a CUDA case")
def test_nproc_2_on_one_gpu_falls_back_cleanly(tmp_path):
    if torch.cuda.device_count() > 1:
        pytest.skip("more than one GPU: --nproc 2 really runs two ranks")
    res = _seqplay("train", corpus(tmp_path), *TINY, "--steps", "10", "--device", DEVICE, "--nproc", "2",
                   "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "1 GPU" in (res.stdout + res.stderr)
