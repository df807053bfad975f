"""Rich renderables for the analysis dicts: the CLI prints them, the TUI shows them in a Static.

Torch-free and Textual-free. Colour scales: values in [0, 1] map white -> orange -> red (surprisal,
gates, attention); signed values map blue (negative) -> white -> red (differences, signed units).
"""

from __future__ import annotations

import math
from typing import Any

from rich.color import Color
from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

WRAP = 80  # characters per strip line


def heat(value: float | None) -> Color:
    """0 -> near white, 1 -> dark red, through yellow and orange."""
    if value is None or not math.isfinite(value):
        return Color.from_rgb(60, 60, 60)
    v = min(max(value, 0.0), 1.0)
    stops = [(0.0, (250, 250, 240)), (0.35, (250, 220, 90)), (0.7, (240, 120, 40)), (1.0, (170, 20, 30))]
    for (x0, c0), (x1, c1) in zip(stops, stops[1:]):
        if v <= x1:
            f = (v - x0) / (x1 - x0)
            return Color.from_rgb(*(round(a + f * (b - a)) for a, b in zip(c0, c1)))
    return Color.from_rgb(*stops[-1][1])


def diverging(value: float | None) -> Color:
    """-1 -> blue, 0 -> white, +1 -> red."""
    if value is None or not math.isfinite(value):
        return Color.from_rgb(60, 60, 60)
    v = min(max(value, -1.0), 1.0)
    if v < 0:
        return Color.from_rgb(round(250 + v * 200), round(250 + v * 150), 250)
    return Color.from_rgb(250, round(250 - v * 200), round(250 - v * 200))


def _cell_style(bg: Color) -> Style:
    r, g, b = bg.get_truecolor()
    fg = "black" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "white"
    return Style(color=fg, bgcolor=bg)


def _visible(ch: str) -> str:
    return {"\n": "↵", "\t": "→", " ": " "}.get(ch, ch if ch.isprintable() else "·")


def strip(chars: list[str], colors: list[Color], label: str = "", label_width: int = 0,
          wrap: int = WRAP) -> Text:
    """Characters on coloured backgrounds, wrapped every ``wrap`` characters (and after newlines)."""
    out = Text()
    pad = " " * label_width
    line_len, first = 0, True
    out.append((label.ljust(label_width) if label_width else ""), style="bold")
    for ch, col in zip(chars, colors):
        if line_len >= wrap:
            out.append("\n" + pad)
            line_len = 0
        out.append(_visible(ch), style=_cell_style(col))
        line_len += 1
        first = False
        if ch == "\n":
            out.append("\n" + pad)
            line_len = 0
    del first
    return out


def _token_chars(tokens: list[str], values: list[float | None]) -> tuple[list[str], list[float | None]]:
    chars: list[str] = []
    vals: list[float | None] = []
    for tok, v in zip(tokens, values):
        for ch in tok:
            chars.append(ch)
            vals.append(v)
    return chars, vals


def _scale_legend(kind: str, lo: str, hi: str) -> Text:
    t = Text(f"{lo} ")
    for i in range(11):
        x = i / 10
        t.append("  ", style=Style(bgcolor=heat(x) if kind == "heat" else diverging(2 * x - 1)))
    t.append(f" {hi}")
    return t


# ------------------------------------------------------------------------------------------- views
# One colour per curve: xterm-256 indices (plotext takes them as ints, Rich as "color(N)").
PALETTE = (1, 6, 2, 5, 3, 4, 208, 13, 10, 14)


def legend(labels: list[str], colors: list[int] | None = None) -> Text:
    """A one-line legend, outside the plot: a coloured bar then each label."""
    out = Text()
    for k, label in enumerate(labels):
        color = (colors or PALETTE)[k % len(colors or PALETTE)]
        out.append("━━ ", style=f"bold color({color})")
        out.append(label + "   ")
    return out


def render_gradients(data: dict[str, Any], width: int = 78, height: int = 20) -> RenderableType:
    """Log-scale plot of ||dL_T/dh_t|| against distance, one coloured line per model (clipped curves
    dotted in the same colour), the legend below the plot, then a table."""
    import plotext as plt

    curves = data.get("curves", [])
    plt.clear_figure()
    plt.plotsize(max(width, 30), max(height, 8))
    plt.theme("clear")
    labels, colors = [], []
    for k, c in enumerate(curves):
        color = PALETTE[k % len(PALETTE)]
        ys = [max(v, 1e-300) for v in c["norm"]]
        plt.plot(c["distances"], [math.log10(v) for v in ys], marker="braille", color=color)
        labels.append(c["label"])
        colors.append(color)
        if c.get("norm_clipped") is not None and c.get("clip_scale", 1.0) < 1.0:
            plt.plot(c["distances"], [math.log10(max(v, 1e-300)) for v in c["norm_clipped"]], marker="dot", color=color)
            labels.append(f"{c['label']} clipped (dots)")
            colors.append(color)
    plt.title("log10 ||dL_T / dh_t||  vs  distance T - t")
    plt.xlabel("distance")
    every = [d for c in curves for d in c["distances"]]
    if every:
        lo, hi = min(every), max(every)
        plt.xticks(sorted({round(lo + k * (hi - lo) / 4) for k in range(5)}))  # whole distances only
    chart = Text.from_ansi(plt.build())
    table = Table(title=f"gradient norm by distance ({data.get('mode', '')})", header_style="bold")
    table.add_column("model")
    marks = _marks(curves)
    for d in marks:
        table.add_column(f"d={d}", justify="right")
    table.add_column("far/near", justify="right")
    for k, c in enumerate(curves):
        by_d = dict(zip(c["distances"], c["norm"]))
        near, far = by_d.get(marks[0]) if marks else None, by_d.get(marks[-1]) if marks else None
        ratio = f"{far / near:.1e}" if near and far is not None else "-"
        table.add_row(Text(c["label"], style=f"color({PALETTE[k % len(PALETTE)]})"),
                      *[f"{by_d[d]:.1e}" if d in by_d else "-" for d in marks], ratio)
    return Group(chart, legend(labels, colors), table)


def _marks(curves: list[dict[str, Any]]) -> list[int]:
    if not curves:
        return []
    common = set(curves[0]["distances"])
    for c in curves[1:]:
        common &= set(c["distances"])
    top = max(common) if common else 1
    return sorted({d for d in (1, 10, top // 2, top) if d in common})


def render_attention(data: dict[str, Any], layer: int | None = None, head: int | None = None,
                     width: int | None = None) -> RenderableType:
    """Token x token heatmaps (rows: queries, columns: keys), two block characters per cell; the heads
    tiled side by side to fill ``width`` (default: one per row)."""
    layers = data["layers"]
    keys = data["tokens"]
    queries = data.get("query_tokens") or keys
    layer = data.get("layer", layer) if layer is None else layer
    head = data.get("head", head) if head is None else head
    picks = range(len(layers)) if layer is None else [layer % len(layers)]
    grids: list[Text] = []
    for li in picks:
        heads = layers[li]
        for hi in (range(len(heads)) if head is None else [head % len(heads)]):
            rows = heads[hi]
            title = "cross-attention" if data.get("kind") == "cross" else f"layer {li} head {hi}"
            grid = Text(f"{title}\n", style="bold")
            grid.append("      " + "".join(_visible(k)[:1] + " " for k in keys) + "\n")
            for qi, row in enumerate(rows):
                grid.append(f"{qi:>3} {_visible(queries[qi])[:1]} ")
                for w in row:
                    grid.append("██", style=Style(color=heat(w)))
                grid.append("\n")
            grids.append(grid)
    cell = 6 + 2 * len(keys) + 2
    per_row = max(1, (width or cell) // cell)
    tiled = Table.grid(padding=(0, 2))
    for _ in range(min(per_row, len(grids))):
        tiled.add_column(no_wrap=True)
    for start in range(0, len(grids), per_row):
        chunk = grids[start : start + per_row]
        tiled.add_row(*chunk, *([""] * (min(per_row, len(grids)) - len(chunk))))
    return Group(tiled, _scale_legend("heat", "0", "1 (attention weight)"))


def render_gates(data: dict[str, Any]) -> RenderableType:
    """One strip per gate (mean over units) and per chosen unit, the text on coloured backgrounds."""
    tokens = data["tokens"]
    rows: list[tuple[str, list[float | None], bool]] = []
    for name, values in data.get("gates", {}).items():
        signed = name in ("g", "n", "R")  # tanh-valued
        rows.append((f"gate {name}", values, signed))
    search = data.get("search")
    if search:
        top = max(abs(v) for v in search["signal"]) or 1.0
        rows.append((f"/{search['pattern']}/", [v / top for v in search["signal"]], False))
    corr = {b["unit"]: b["corr"] for b in (search or {}).get("best", [])}
    for name, values in data.get("units", {}).items():
        label = f"{name}" + (f" r={corr[name]:+.2f}" if name in corr else "")
        peak = max((abs(v) for v in values), default=1.0) or 1.0
        rows.append((label, [v / peak for v in values] if name.startswith("c") else values, True))
    label_width = max((len(r[0]) for r in rows), default=0) + 1
    parts: list[RenderableType] = [Text(f"{data.get('arch', '')} layer {data.get('layer', 0)}: "
                                        f"{len(tokens)} tokens, {data.get('width', '?')} units", style="bold")]
    for label, values, signed in rows:
        chars, vals = _token_chars(tokens, values)
        colors = [diverging(v) if signed else heat(v) for v in vals]
        parts.append(strip(chars, colors, label, label_width))
    parts.append(_scale_legend("div", "-1", "+1 (tanh, units)"))
    parts.append(_scale_legend("heat", "0", "1 (sigmoid gates)"))
    return Group(*parts)


def render_surprisal(data: dict[str, Any], cap: float | None = None) -> RenderableType:
    """The text coloured by per-token loss (nats), scaled to ``cap`` (default: 2x the mean loss)."""
    if data.get("analysis") == "surprisal_diff":
        return render_surprisal_diff(data)
    losses = data["losses"]
    top = cap or max(2.0 * data["mean_loss"], 1e-6)
    chars, vals = _token_chars(data["tokens"], [None if v is None else v / top for v in losses])
    head = Text(f"{data.get('run', '')}  mean loss {data['mean_loss']:.3f} nats/token, "
                f"perplexity {data['perplexity']:.2f}, {data['bits_per_char']:.3f} bits/char", style="bold")
    return Group(head, strip(chars, [heat(v) for v in vals]), _scale_legend("heat", "0", f"{top:.1f}+ nats"))


def render_surprisal_diff(data: dict[str, Any]) -> RenderableType:
    known = [abs(v) for v in data["diff"] if v is not None]
    top = max(sorted(known)[int(0.95 * (len(known) - 1))] if known else 1.0, 1e-6)
    colors = [diverging(None if v is None else v / top) for v in data["diff"]]
    head = Text(f"A = {data['run_a']} ({data['bits_per_char_a']:.3f} bpc)  vs  B = {data['run_b']} "
                f"({data['bits_per_char_b']:.3f} bpc): A is better on {100 * data['share_a_better']:.0f}% "
                "of characters (blue: A less surprised, red: B)", style="bold")
    return Group(head, strip(data["chars"], colors), _scale_legend("div", "A better", "B better"))


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _short(n: int | float | None) -> str:
    """1234567 -> 1.2M (table cells that fit 80 columns)."""
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:,.0f}"


def render_table(data: dict[str, Any]) -> RenderableType:
    """One Rich table per corpus; the n-gram baseline row in italics, runs that lose to it flagged."""
    if not data["groups"]:
        return Text("no runs" + (f" on {data['corpus']}" if data.get("corpus") else "") +
                    " yet; train some with `seqplay table CORPUS --train rnn,lstm,transformer --time 60`")
    tables = []
    for g in data["groups"]:
        t = Table(title=f"{g['source']}" + (f"  (n-gram baseline {g['baseline_bpc']:.3f} bpc)"
                                             if g.get("baseline_bpc") is not None else "  (no n-gram baseline yet)"),
                  header_style="bold")
        for col, just in (("run", "left"), ("arch", "left"), ("tok", "left"), ("params", "right"),
                          ("tokens seen", "right"), ("wall time", "right"), ("val ppl", "right"),
                          ("bits/char", "right"), ("", "left")):
            t.add_column(col, justify=just)
        for r in g["rows"]:
            flag = "base" if r["baseline"] else ("✗" if r["beats_baseline"] is False else "")
            style = "italic" if r["baseline"] else ("red" if r["beats_baseline"] is False else "")
            t.add_row(r["run"], r["arch"], r["tokenizer"], _short(r["params"]), _short(r["tokens_seen"]), _fmt(r["wall_time"], ".1f") + ("s" if r["wall_time"] is not None else ""),
                      _fmt(r["val_ppl"], ".2f"), _fmt(r["val_bpc"], ".3f"), flag, style=style)
        tables.append(t)
    tables.append(Text("✗: does not beat the n-gram baseline's bits/char; base: the n-gram baseline", style="dim"))
    return Group(*tables)


def render_memorization(data: dict[str, Any]) -> RenderableType:
    """Each sample with copied n-grams shaded and its longest copied span underlined."""
    parts: list[RenderableType] = [Text(
        f"memorisation against {data.get('source') or 'the training text'} ({data['training_chars']:,} chars): "
        f"{data['n']}-gram overlap {100 * data['mean_ngram_share']:.1f}% on average, "
        f"longest copied span {data['max_span_length']} chars", style="bold")]
    for i, s in enumerate(data["samples"]):
        sample, mask = s["sample"], s["copied_mask"]
        start, end = s["span_start"], s["span_start"] + s["span_length"]
        text = Text(f"sample {i + 1}: longest copy {s['span_length']} chars, "
                    f"{100 * s['ngram_share']:.1f}% of {data['n']}-grams in training text\n", style="bold")
        for j, ch in enumerate(sample):
            style = Style(bgcolor=Color.from_rgb(240, 150, 60), color="black") if mask[j] == "1" else Style()
            if start <= j < end:
                style += Style(underline=True, bold=True)
            text.append(_visible(ch) if ch != "\n" else "↵\n", style=style)
        parts.append(text)
    key = Text()
    key.append(" abc ", style=Style(bgcolor=Color.from_rgb(240, 150, 60), color="black"))
    key.append(f" inside an {data['n']}-gram of the training text   ")
    key.append("abc", style=Style(underline=True, bold=True))
    key.append(" the longest copied span")
    parts.append(key)
    return Group(*parts)


RENDERERS = {
    "gradients": render_gradients,
    "attention": render_attention,
    "gates": render_gates,
    "surprisal": render_surprisal,
    "surprisal_diff": render_surprisal_diff,
    "table": render_table,
    "memorization": render_memorization,
}


def render(data: dict[str, Any], width: int | None = None, height: int | None = None) -> RenderableType:
    """The view of any analysis dict (dispatch on its ``analysis`` key), fitted to ``width`` columns
    where the view can use it (the gradient plot, the tiled attention heads) and the plot to ``height``."""
    kind = data["analysis"]
    if width is not None and kind == "gradients":
        return render_gradients(data, width=max(width - 2, 30), height=height or 20)
    if width is not None and kind == "attention":
        return render_attention(data, width=width)
    return RENDERERS[kind](data)
