"""PNG renders of the app's panes at 80x24 for docs/screens/, from the snapshot baselines.

    pip install -e .[screens]      # cairosvg
    python -m pytest tests/test_snapshots_lab.py tests/test_snapshots_insight.py --snapshot-update  # if changed
    python benchmarks/render_screens.py [--out docs/screens]

Each PNG is the SVG that pytest-textual-snapshot keeps (what the test compares), drawn by cairosvg;
braille plot dots may render slightly differently from a real terminal font.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "__snapshots__"
SCREENS = {
    "data-80x24.png": "test_snapshots_tui/test_data_pane[80x24].svg",
    "model-80x24.png": "test_snapshots_tui/test_model_pane[80x24].svg",
    "train-80x24.png": "test_snapshots_tui/test_train_pane_after_a_run[80x24].svg",
    "train-log-ppl-80x24.png": "test_snapshots_tui/test_train_pane_log_scale_perplexity[80x24].svg",
    "help-80x24.png": "test_snapshots_tui/test_help_screen[80x24].svg",
    "generate-80x24.png": "test_snapshots_lab/test_generate_lab[80x24].svg",
    "runs-80x24.png": "test_snapshots_lab/test_runs_manage[80x24].svg",
    "insight-gradients-80x24.png": "test_snapshots_insight/test_insight_view[gradients-80x24].svg",
    "insight-attention-80x24.png": "test_snapshots_insight/test_insight_view[attention-80x24].svg",
    "insight-gates-80x24.png": "test_snapshots_insight/test_insight_view[gates-80x24].svg",
    "insight-surprisal-80x24.png": "test_snapshots_insight/test_insight_view[surprisal-80x24].svg",
    "insight-table-80x24.png": "test_snapshots_insight/test_insight_view[table-80x24].svg",
    "insight-memorization-80x24.png": "test_snapshots_insight/test_insight_view[memorization-80x24].svg",
    "train-snapshot-sample-80x24.png": "test_snapshots_tui/test_train_pane_snapshot_sample_at_the_cursor[80x24].svg",
    "generate-removed-alternatives-80x24.png": "test_snapshots_lab/test_generate_lab_removed_alternatives.svg",
    "lab-ab-80x24.png": "test_snapshots_labpane/test_lab_view[ab-80x24].svg",
    "lab-stages-80x24.png": "test_snapshots_labpane/test_lab_view[stages-80x24].svg",
    "lab-timeline-80x24.png": "test_snapshots_labpane/test_lab_view[timeline-80x24].svg",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screens"))
    args = parser.parse_args()
    try:
        import cairosvg
    except ImportError:
        raise SystemExit("error: cairosvg is not installed; pip install -e .[screens]") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for png, svg in SCREENS.items():
        source = SNAPSHOTS / svg
        if not source.is_file():
            raise SystemExit(f"error: no snapshot {source}; run the snapshot tests with --snapshot-update first")
        cairosvg.svg2png(url=str(source), write_to=str(out / png))
        print(out / png)


if __name__ == "__main__":
    main()
