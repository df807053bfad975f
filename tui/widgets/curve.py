"""Line charts for training curves: plotext through textual-plotext, redrawn at most ``REDRAW_HZ``
times a second from ``BoundedSeries`` (a long run never costs more than a few hundred points to draw).

TensorBoard is the bar: whole-number step ticks; EMA smoothing with the raw curve faint behind;
vertical markers for events (LR changes, pauses, rollbacks, checkpoints); the legend and a cursor
readout outside the plot, in the border (left/right move the cursor, shift for ten points, home/end).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from rich.markup import escape
from rich.text import Text
from textual.app import RenderResult
from textual.binding import Binding
from textual_plotext import PlotextPlot

from tui.series import BoundedSeries, ema, integer_ticks

REDRAW_HZ = 4.0
# (plotext colour name, the hex it draws as) for the series, in order, and for the event markers
COLORS = [("orange", "#e5892b"), ("cyan", "#29b8db"), ("green", "#23d18b"), ("magenta", "#d670d6"),
          ("red", "#f14c4c"), ("blue", "#3b8eea"), ("yellow", "#e5e510")]
MARKER_COLORS = {"lr change": ("yellow", "#e5e510"), "pause": ("gray", "#808080"), "rollback": ("red", "#f14c4c"),
                 "checkpoint": ("green", "#23d18b")}


class LinePlot(PlotextPlot):
    """Named line series with log scale, EMA smoothing, event markers and a cursor; call
    ``mark_dirty`` after changing data."""

    can_focus = True
    BINDINGS = [
        Binding("left", "cursor(-1)", "Cursor ←", show=False),
        Binding("right", "cursor(1)", "Cursor →", show=False),
        Binding("shift+left", "cursor(-10)", "Cursor ←10", show=False),
        Binding("shift+right", "cursor(10)", "Cursor →10", show=False),
        Binding("home", "cursor_to(0)", "Cursor to start", show=False),
        Binding("end", "cursor_to(-1)", "Cursor to end", show=False),
    ]

    def __init__(self, title: str = "", xlabel: str = "step", ylabel: str = "", capacity: int = 400, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.xlabel = xlabel
        self.ylabel = ylabel
        self.capacity = capacity
        self.series: dict[str, BoundedSeries] = {}
        self.markers: dict[str, str] = {}
        self.series_colors: dict[str, tuple[str, str]] = {}
        self.log_y = False
        self.smooth = 0.0  # EMA weight applied to series named in ``smoothed``
        self.smoothed: set[str] = set()
        self.transform = None  # optional y -> y' (e.g. loss -> perplexity)
        self.x_map: Callable[[float], float] | None = None  # step -> shown x (tokens, seconds); None: step
        self.x_format: Callable[[float], str] = lambda x: f"{x:,.0f}"
        self.events: list[tuple[float, str]] = []  # (step, kind) drawn as vertical lines
        self.cursor: int | None = None  # index into the first series
        self.readout_extra: Callable[[float], str] | None = None  # step -> extra readout text
        self.points_received = 0
        self.redraws = 0
        self._dirty = False

    @property
    def integer_x(self) -> bool:
        return self.x_map is None and self.xlabel == "step"

    def on_mount(self) -> None:
        super().on_mount()
        self.border_title = self.title
        self.set_interval(1.0 / REDRAW_HZ, self._redraw_if_dirty)

    def on_resize(self) -> None:
        self._dirty = True

    def line(self, name: str, marker: str = "braille") -> BoundedSeries:
        if name not in self.series:
            self.series[name] = BoundedSeries(self.capacity)
            self.markers[name] = marker
            self.series_colors[name] = COLORS[len(self.series_colors) % len(COLORS)]
        return self.series[name]

    def add_points(self, name: str, points: list[tuple[float, float]]) -> None:
        self.line(name).extend(points)
        self.points_received += len(points)
        self._dirty = True

    def add_event(self, step: float, kind: str) -> None:
        self.events.append((float(step), kind))
        del self.events[:-200]  # markers are few; keep the newest
        self._dirty = True

    def clear(self) -> None:
        self.series.clear()
        self.markers.clear()
        self.series_colors.clear()
        self.events.clear()
        self.cursor = None
        self._dirty = True

    def mark_dirty(self) -> None:
        self._dirty = True

    def redraw_now(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    # -- cursor ----------------------------------------------------------------------------------------
    def _primary(self) -> BoundedSeries | None:
        return next((s for s in self.series.values() if len(s)), None)

    def action_cursor(self, delta: int) -> None:
        s = self._primary()
        if s is None:
            return
        start = len(s) - 1 if self.cursor is None else self.cursor
        self.cursor = max(0, min(len(s) - 1, start + delta))
        self.redraw_now()

    def action_cursor_to(self, index: int) -> None:
        s = self._primary()
        if s is not None:
            self.cursor = index % len(s)
            self.redraw_now()

    def cursor_x(self) -> float | None:
        """The x (step) under the cursor; None without a cursor."""
        s = self._primary()
        return None if s is None or self.cursor is None else s.xs[min(self.cursor, len(s) - 1)]

    def readout(self) -> str:
        """"step N · name value (smoothed v) · extra" at the cursor ("" without a cursor)."""
        s = self._primary()
        if s is None or self.cursor is None:
            return ""
        i = min(self.cursor, len(s) - 1)
        step = s.xs[i]
        parts = [f"step {step:,.0f}"]
        for name, series in self.series.items():
            if not len(series):
                continue
            j = max(0, min(len(series) - 1, bisect.bisect_left(series.xs, step)))
            if abs(series.xs[j] - step) > max(1.0, 0.02 * (series.xs[-1] - series.xs[0])):
                continue  # no point of this series near the cursor
            value = self._y(series.ys[j])
            text = f"{name} {value:.4g}"
            if name in self.smoothed and self.smooth > 0:
                text += f" (smoothed {self._y(ema(series.ys[:j + 1], self.smooth)[-1]):.4g})"
            parts.append(text)
        if self.readout_extra is not None:
            parts.append(self.readout_extra(step))
        return " · ".join(p for p in parts if p)

    def _y(self, y: float) -> float:
        return self.transform(y) if self.transform is not None else y

    def legend(self) -> str:
        """Rich markup: a coloured swatch per series and per marker kind shown."""
        items = [f"[{rich}]━[/] {escape(name)}" for name, (_p, rich) in self.series_colors.items() if len(self.series[name])]
        for kind in dict.fromkeys(k for _x, k in self.events):
            items.append(f"[{MARKER_COLORS.get(kind, ('white', '#ffffff'))[1]}]┆[/] {kind}")
        return "  ".join(items)

    # -- drawing ---------------------------------------------------------------------------------------
    def _redraw_if_dirty(self) -> None:
        if not self._dirty or not self.region.area:
            return  # nothing new, or not on screen (another tab): redraw when shown
        self._dirty = False
        self.redraws += 1
        plt = self.plt
        plt.clear_data()
        plt.xlabel(self.xlabel)
        plt.ylabel(self.ylabel + (" (log)" if self.log_y else ""))
        fx = self.x_map or (lambda x: x)
        drawn = 0
        xs_seen: list[float] = []
        for name, s in self.series.items():
            if not len(s):
                continue
            color = self.series_colors[name][0]
            smooth = name in self.smoothed and self.smooth > 0
            layers = [(s.ys, "gray")] if smooth else []  # the raw curve, faint, behind its EMA
            layers.append((ema(s.ys, self.smooth) if smooth else s.ys, color))
            for ys, c in layers:
                pts = [(fx(x), self._y(y)) for x, y in zip(s.xs, ys)]
                pts = [(x, y) for x, y in pts if math.isfinite(y) and (y > 0 or not self.log_y)]
                if pts:
                    plt.plot([p[0] for p in pts], [p[1] for p in pts], marker=self.markers[name], color=c)
                    drawn += len(pts)
                    xs_seen += (pts[0][0], pts[-1][0])
        if xs_seen:
            lo, hi = min(xs_seen), max(xs_seen)
            for step, kind in self.events:
                x = fx(step)
                if lo <= x <= hi:
                    plt.vline(x, MARKER_COLORS.get(kind, ("white", "white"))[0])
            primary = self._primary()
            if self.cursor is not None and primary is not None:
                plt.vline(fx(primary.xs[min(self.cursor, len(primary) - 1)]), "white")
            ticks = integer_ticks(lo, hi) if self.integer_x else _ticks(lo, hi)
            plt.xticks(ticks, [self.x_format(t) for t in ticks])
        plt.yscale("log" if self.log_y and drawn else "linear")  # plotext fails on a log axis without data
        self.border_title = self.readout() or self.title
        self.border_subtitle = self.legend()
        self.refresh()

    def render(self) -> RenderResult:
        try:
            return super().render()
        except Exception as err:  # a plotting bug must never take the app down
            return Text(f"(cannot draw the chart: {type(err).__name__})", style="dim")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / (count - 1)
    return [lo + i * step for i in range(count)]
