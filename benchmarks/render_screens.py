"""Render the snapshot baselines of the Data, Model, Train and help screens at 80x24 as PNGs under
docs/screens/ (needs cairosvg: `pip install cairosvg`).

    python benchmarks/render_screens.py
"""

from __future__ import annotations

from pathlib import Path

import cairosvg

ROOT = Path(__file__).resolve().parent.parent
SNAPS = ROOT / "tests" / "__snapshots__" / "test_snapshots_tui"
OUT = ROOT / "docs" / "screens"
SCREENS = {"data": "test_data_pane[80x24]", "model": "test_model_pane[80x24]",
           "train": "test_train_pane_after_a_run[80x24]", "train_log_ppl": "test_train_pane_log_scale_perplexity[80x24]",
           "help": "test_help_screen[80x24]"}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, snap in SCREENS.items():
        target = OUT / f"{name}_80x24.png"
        cairosvg.svg2png(url=str(SNAPS / f"{snap}.svg"), write_to=str(target), output_width=1200)
        print(target.relative_to(ROOT))
