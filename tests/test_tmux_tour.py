"""The tmux tour (benchmarks/tmux_tour.sh): the whole loop in a real terminal, failing on a traceback.
Slow (trains two small runs and runs every Insight view on the real worker): run with -m slow."""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[1] / "benchmarks" / "tmux_tour.sh"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tmux_tour(tmp_path):
    res = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "tour")], capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    assert "tour passed" in res.stdout
