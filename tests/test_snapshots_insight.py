"""Snapshot tests of every Insight view at 80x24 and 160x48, fed scripted ``AnalysisDone`` events (no
torch, no worker).

Update the baselines after an intended change with `pytest tests/test_snapshots_insight.py --snapshot-update`.
"""

import math

import pytest
from textual.app import App, ComposeResult

from engine.insight.memorization import memorization_report
from engine.worker import protocol as P
from tui.panes.insight import InsightPane

TEXT = 'he said "hi" to\nme, "ok"'


def _gradients():
    d = list(range(1, 41))
    return {"analysis": "gradients", "mode": "at initialisation", "source": "grammar", "curves": [
        {"label": "rnn", "distances": d, "norm": [0.4 * 0.6**k for k in d]},
        {"label": "lstm", "distances": d, "norm": [0.2 * 0.8**k for k in d]},
        {"label": "transformer", "distances": d, "norm": [0.05 for _ in d]},
    ]}


def _attention():
    tokens = list("the cat")
    n = len(tokens)
    uniform = [[1.0 / (i + 1) if j <= i else 0.0 for j in range(n)] for i in range(n)]
    previous = [[1.0 if j == max(i - 1, 0) else 0.0 for j in range(n)] for i in range(n)]
    return {"analysis": "attention", "kind": "self", "tokens": tokens, "layers": [[uniform, previous]]}


def _gates():
    tokens = list(TEXT)
    inside, quote = [], False
    for ch in tokens:
        quote = (not quote) if ch == '"' else quote
        inside.append(1.0 if quote or ch == '"' else 0.0)
    wave = [round(math.sin(i / 3), 4) for i in range(len(tokens))]
    return {"analysis": "gates", "arch": "lstm", "layer": 0, "width": 8, "tokens": tokens,
            "gates": {"i": [0.5] * len(tokens), "f": [round(0.2 + 0.6 * v, 4) for v in inside],
                      "g": wave, "o": [round(0.5 + 0.4 * w, 4) for w in wave]},
            "units": {"h0": wave, "c3": [2.0 * v - 1.0 for v in inside]},
            "search": {"pattern": "quotes", "signal": inside, "best": [{"unit": "c3", "corr": 0.97}]}}


def _surprisal():
    tokens = list(TEXT)
    return {"analysis": "surprisal", "run": "lstm-run", "tokens": tokens,
            "losses": [None] + [round(0.3 + 3.0 * abs(math.sin(i)), 4) for i in range(1, len(tokens))],
            "mean_loss": 2.0, "perplexity": math.exp(2.0), "bits_per_char": 2.885}


def _diff():
    chars = list(TEXT)
    return {"analysis": "surprisal_diff", "run_a": "lstm", "run_b": "ngram", "chars": chars,
            "diff": [None] + [round(math.cos(i), 4) for i in range(1, len(chars))],
            "bits_per_char_a": 2.1, "bits_per_char_b": 2.6, "share_a_better": 0.48}


def _table():
    def row(run, arch, params, bpc, base=False, beats=None):
        return {"run": run, "arch": arch, "tokenizer": "char", "params": params, "steps": 500,
                "tokens_seen": 512000, "wall_time": 60.0, "val_loss": bpc * math.log(2),
                "val_ppl": 2 ** bpc, "val_bpc": bpc, "status": "finished", "baseline": base,
                "beats_baseline": beats}
    return {"analysis": "table", "corpus": "grammar", "groups": [{
        "source": "grammar", "baseline_bpc": 2.2,
        "rows": [row("lstm-1", "lstm", 200000, 1.9, beats=True), row("ngram-1", "ngram", 0, 2.2, base=True),
                 row("rnn-1", "rnn", 200000, 2.4, beats=False)]}]}


def _memorization():
    training = "the quick brown fox jumps over the lazy dog.\nthe cat sat on the mat.\n"
    return memorization_report(["a quick brown fox sat on the mat!", "zzz qqq"], training, n=8, source="toy")


VIEWS = {
    "gradients": _gradients,
    "attention": _attention,
    "gates": _gates,
    "surprisal": _surprisal,
    "surprisal_diff": _diff,
    "table": _table,
    "memorization": _memorization,
}


SIZES = {"80x24": (80, 24), "160x48": (160, 48)}


class InsightApp(App):
    """Just the Insight pane, showing one scripted result."""

    def __init__(self, analysis: str, data: dict | None, error: str | None = None):
        super().__init__()
        self.analysis, self.data, self.error = analysis, data, error

    def compose(self) -> ComposeResult:
        yield InsightPane(id="insight")

    def show(self) -> None:
        done = P.AnalysisDone(job="j", analysis=self.analysis, reason="error" if self.error else "done",
                              data=self.data, message=self.error or "", seconds=1.5)
        self.query_one(InsightPane).show_done(done)


async def _show(pilot) -> None:
    await pilot.pause()
    pilot.app.show()
    await pilot.pause()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("view", list(VIEWS))
def test_insight_view(snap_compare, view, size):
    analysis = "surprisal" if view == "surprisal_diff" else view
    assert snap_compare(InsightApp(analysis, VIEWS[view]()), terminal_size=SIZES[size], run_before=_show)


def test_insight_error_view(snap_compare):
    assert snap_compare(InsightApp("attention", None, "a lstm has no self-attention; pick a Transformer run"),
                        terminal_size=(80, 24), run_before=_show)
