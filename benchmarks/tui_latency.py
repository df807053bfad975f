"""TUI benchmarks: start-up time, key-press latency while training at full speed, and training
throughput under the TUI against headless `seqplay train` on the same settings.

Key-press latency is taken two ways: to the first frame that shows the new pane (what the user sees)
and to when ``pilot.pause()`` returns, the app's messages handled (the tab underline's animation and
the footer's rebuild come after the pane is on screen).

    python benchmarks/tui_latency.py [--steps 300] [--presses 40] [--skip-throughput]

Uses a throw-away SEQPLAY_HOME. Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The same model both ways (dropout 0 picks the same attention path; the flags' defaults fill the rest)
MODEL = {"width": 128, "layers": 2, "heads": 4, "context": 64, "dropout": 0.0}
TRAIN_ARGS = ["grammar", "--arch", "transformer", "--width", "128", "--layers", "2", "--heads", "4",
              "--context", "64", "--dropout", "0", "--batch-size", "32", "--device", "cpu", "--eval-every", "100000",
              "--sample-every", "0"]

STARTUP_CHILD = r"""
import sys, time
t_import = time.time()
from tui.app import SeqplayApp
t_imported = time.time()
async def first_screen(pilot):
    await pilot.pause()
    print(t_import, t_imported, time.time(), flush=True)
    pilot.app.exit()
if __name__ == "__main__":
    SeqplayApp().run(headless=True, size=(160, 48), auto_pilot=first_screen)
"""


def startup(repeats: int = 5) -> dict:
    """Wall time from launching the interpreter to the first composed screen (headless)."""
    totals, imports = [], []
    for _ in range(repeats):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", STARTUP_CHILD], capture_output=True, text=True, cwd=ROOT, check=True)
        t_import, t_imported, t_screen = (float(x) for x in out.stdout.split()[-3:])
        totals.append(t_screen - t0)
        imports.append(t_imported - t_import)
    return {"measure": "startup_to_first_screen_s", "median": statistics.median(totals), "max": max(totals),
            "import_tui_app_s": statistics.median(imports), "repeats": repeats}


def startup_tmux(repeats: int = 5) -> dict | None:
    """As a user sees it: launch `seqplay` in a 160x48 tmux pane; time until the Data pane is painted."""
    import shutil

    if not shutil.which("tmux") or not shutil.which("seqplay"):
        return None
    times = []
    for i in range(repeats):
        name = f"seqplay-bench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        subprocess.run(["tmux", "new", "-d", "-s", name, "-x", "160", "-y", "48", "seqplay; sleep 30"], check=True, cwd=ROOT)
        screen = ""
        while "Built-in corpora" not in screen:
            if time.perf_counter() - t0 > 20:  # never painted: say what the pane shows, not a time
                subprocess.run(["tmux", "kill-session", "-t", name], check=False)
                last = [line for line in screen.splitlines() if line.strip()][-1:] or ["(empty)"]
                return {"measure": "tmux_launch_to_first_paint_s", "error": f"no Data pane after 20 s: {last[0][:100]}"}
            time.sleep(0.005)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
        times.append(time.perf_counter() - t0)
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        time.sleep(0.5)
    return {"measure": "tmux_launch_to_first_paint_s", "median": statistics.median(times), "max": max(times),
            "repeats": repeats}


def run_threads(run_dir: Path) -> int | None:
    """The intra-op threads the run trained with (its first log line says)."""
    import re

    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            found = re.search(r"(\d+) threads?\)", line)
            if found:
                return int(found.group(1))
    return None


def step_tokens_per_s(run_dir: Path, skip: float = 0.2) -> float:
    """Median tokens/s over the steps of a run, skipping the first ``skip`` fraction (warm-up)."""
    speeds = []
    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row.get("event") == "step":
                speeds.append(float(row["tokens_per_s"]))
    speeds = speeds[int(len(speeds) * skip):]
    return statistics.median(speeds)


def headless_throughput(steps: int) -> float:
    subprocess.run([sys.executable, "-m", "seqplay", "train", *TRAIN_ARGS, "--steps", str(steps), "--run-name", "headless"],
                   check=True, cwd=ROOT, capture_output=True)
    from engine.runs.folders import runs_root as runs_dir

    return step_tokens_per_s(runs_dir() / "headless")


@contextlib.contextmanager
def _frames_recorded(frames: list, target: list):
    """Record every frame Textual's compositor renders while the block runs: its time and whether the
    widget ``target[0]`` was on it (what the user sees, against when the app's message queue settles)."""
    from textual._compositor import Compositor

    originals = {name: getattr(Compositor, name) for name in ("render_full_update", "render_partial_update")}

    def recording(original):
        def render(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            frames.append((time.perf_counter(), target[0] is not None and target[0] in self.visible_widgets))
            return out
        return render

    for name, original in originals.items():
        setattr(Compositor, name, recording(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(Compositor, name, original)


async def tui_session(steps: int, presses: int) -> dict:
    """Train under the TUI (real worker); press keys while it runs; return latency and tokens/s."""
    from engine.training.config import TrainConfig
    from tui.app import SeqplayApp

    app = SeqplayApp(device="cpu")
    result: dict = {}
    async with app.run_test(size=(160, 48)) as pilot:
        while app.pane("data").stats is None:
            await pilot.pause(0.1)
        config = TrainConfig(source="grammar", arch="transformer", model=dict(MODEL), batch_size=32, steps=steps,
                             eval_every=100_000, sample_every=0, device="cpu", run_name="under-tui").to_dict()
        app.action_train(config=config)
        while app.pane("train").last is None or app.pane("train").last.step < steps * 0.2:
            await pilot.pause(0.1)
        latencies, first_frames = [], []
        frames: list[tuple[float, bool]] = []  # (when a frame was written, whether it showed the target pane)
        target: list = [None]
        with _frames_recorded(frames, target):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for i in range(presses):  # switch panes: each press re-lays out and repaints a whole pane
                if app.train_job is None:
                    break
                key = "1" if i % 2 else "3"
                target[0] = app.pane("data" if key == "1" else "train")
                frames.clear()
                t0 = time.perf_counter()
                await pilot.press(key)
                await pilot.pause()
                latencies.append(time.perf_counter() - t0)
                await pilot.pause(0.1)
                shown = [when for when, visible in frames if visible]
                if shown:
                    first_frames.append(shown[0] - t0)
            result["ui_cpu_fraction"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        while app.train_job is not None:
            await pilot.pause(0.2)
        result["latencies"] = latencies
        result["first_frames"] = first_frames
        result["run_dir"] = app.last_run_dir
    app.shutdown_engine()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="seqplay-bench-")
    os.environ["SEQPLAY_HOME"] = home
    print(json.dumps(startup()), flush=True)
    print(json.dumps(startup_tmux()), flush=True)
    session = asyncio.run(tui_session(args.steps, args.presses))
    lat, first = sorted(session["latencies"]), sorted(session["first_frames"])
    print(json.dumps({"measure": "keypress_to_first_frame_of_the_pane_while_training_ms", "n": len(first),
                      "median": 1000 * statistics.median(first), "p95": 1000 * first[int(0.95 * (len(first) - 1))],
                      "max": 1000 * first[-1]}), flush=True)
    print(json.dumps({"measure": "keypress_to_settled_while_training_ms", "n": len(lat),
                      "median": 1000 * statistics.median(lat), "p95": 1000 * lat[int(0.95 * (len(lat) - 1))],
                      "max": 1000 * lat[-1], "ui_process_cpu_fraction": session["ui_cpu_fraction"]}), flush=True)
    if not args.skip_throughput:
        tui_tps = step_tokens_per_s(Path(session["run_dir"]))
        headless_tps = headless_throughput(args.steps)
        from engine.runs.folders import runs_root

        print(json.dumps({"measure": "training_tokens_per_s", "under_tui": tui_tps, "headless": headless_tps,
                          "ratio": tui_tps / headless_tps, "steps": args.steps,
                          "threads_under_tui": run_threads(Path(session["run_dir"])),
                          "threads_headless": run_threads(runs_root() / "headless")}), flush=True)


if __name__ == "__main__":
    main()
