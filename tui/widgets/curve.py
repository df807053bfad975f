"""Line charts for loss curves: plotext through textual-plotext, redrawn at most ``REDRAW_HZ`` times a
second from ``BoundedSeries`` (so a long run never costs more than a few hundred points to draw)."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from tui.series import BoundedSeries, ema, integer_ticks

REDRAW_HZ = 4.0


class LinePlot(PlotextPlot):
    """Named line series with optional log scale and smoothing; call ``mark_dirty`` after changing data."""

    can_focus = True

    def __init__(self, title: str = "", xlabel: str = "step", ylabel: str = "", capacity: int = 400, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.xlabel = xlabel
        self.ylabel = ylabel
        self.capacity = capacity
        self.series: dict[str, BoundedSeries] = {}
        self.markers: dict[str, str] = {}
        self.log_y = False
        self.smooth = 0.0  # EMA weight applied to series named in ``smoothed``
        self.smoothed: set[str] = set()
        self.transform = None  # optional y -> y' (e.g. loss -> perplexity)
        self.integer_x = xlabel == "step"  # steps are whole numbers: no 125.4 ticks
        self.points_received = 0
        self.redraws = 0
        self._dirty = False

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0 / REDRAW_HZ, self._redraw_if_dirty)

    def on_resize(self) -> None:
        self._dirty = True

    def line(self, name: str, marker: str = "braille") -> BoundedSeries:
        if name not in self.series:
            self.series[name] = BoundedSeries(self.capacity)
            self.markers[name] = marker
        return self.series[name]

    def add_points(self, name: str, points: list[tuple[float, float]]) -> None:
        self.line(name).extend(points)
        self.points_received += len(points)
        self._dirty = True

    def clear(self) -> None:
        self.series.clear()
        self.markers.clear()
        self._dirty = True

    def mark_dirty(self) -> None:
        self._dirty = True

    def redraw_now(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    def _redraw_if_dirty(self) -> None:
        if not self._dirty or not self.region.area:
            return  # nothing new, or not on screen (another tab): redraw when shown
        self._dirty = False
        self.redraws += 1
        plt = self.plt
        plt.clear_data()
        plt.title(self.title)
        plt.xlabel(self.xlabel)
        plt.ylabel(self.ylabel + (" (log)" if self.log_y else ""))
        drawn = 0
        xs_seen: list[float] = []
        for name, s in self.series.items():
            if not len(s):
                continue
            smooth = name in self.smoothed and self.smooth > 0
            layers = [(s.ys, "gray", None)] if smooth else []  # the raw curve, faint, behind its EMA
            layers.append((ema(s.ys, self.smooth) if smooth else s.ys, None, name))
            for ys, color, label in layers:
                if self.transform is not None:
                    ys = [self.transform(y) for y in ys]
                pts = [(x, y) for x, y in zip(s.xs, ys) if math.isfinite(y) and (y > 0 or not self.log_y)]
                if pts:
                    extra = {"color": color} if color else {}
                    plt.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker=self.markers[name], **extra)
                    drawn += len(pts)
                    xs_seen += (pts[0][0], pts[-1][0])
        if xs_seen and self.integer_x:
            ticks = integer_ticks(min(xs_seen), max(xs_seen))
            plt.xticks(ticks, [f"{t:,}" for t in ticks])
        plt.yscale("log" if self.log_y and drawn else "linear")  # plotext fails on a log axis without data
        self.refresh()

    def render(self) -> RenderResult:
        try:
            return super().render()
        except Exception as err:  # a plotting bug must never take the app down
            return Text(f"(cannot draw the chart: {type(err).__name__})", style="dim")
