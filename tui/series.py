"""Bounded series for live curves: a long run keeps a fixed number of points in memory.

The newest points stay at full resolution; when the buffer is full its older half is folded into a
min/max envelope (every four points become their lowest and their highest, in step order), so a curve
of a million steps still costs at most ``capacity`` points to hold and to draw, and a spike survives
any amount of folding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class BoundedSeries:
    """(x, y) points, at most ``capacity`` of them; old points fold into a min/max envelope when full."""

    def __init__(self, capacity: int = 400):
        if capacity < 4:
            raise ValueError("capacity must be at least 4")
        self.capacity = capacity
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.count = 0  # points ever added

    def __len__(self) -> int:
        return len(self.xs)

    def clear(self) -> None:
        self.xs.clear()
        self.ys.clear()
        self.count = 0

    def append(self, x: float, y: float) -> None:
        self.xs.append(float(x))
        self.ys.append(float(y))
        self.count += 1
        if len(self.xs) > self.capacity:
            self._compact()

    def extend(self, points: Iterable[tuple[float, float]]) -> None:
        for x, y in points:
            self.append(x, y)

    def _compact(self) -> None:
        half = len(self.xs) // 2
        half -= half % 4
        xs: list[float] = []
        ys: list[float] = []
        for i in range(0, half, 4):
            group = [(x, y) for x, y in zip(self.xs[i:i + 4], self.ys[i:i + 4]) if math.isfinite(y)]
            if not group:
                group = [(self.xs[i], self.ys[i])]
            lo = min(group, key=lambda p: p[1])
            hi = max(group, key=lambda p: p[1])
            for x, y in sorted({lo, hi}):
                xs.append(x)
                ys.append(y)
        self.xs = xs + self.xs[half:]
        self.ys = ys + self.ys[half:]

    def last(self) -> tuple[float, float] | None:
        return (self.xs[-1], self.ys[-1]) if self.xs else None


def integer_ticks(lo: float, hi: float, count: int = 5) -> list[int]:
    """About ``count`` round whole-number ticks (1, 2 or 5 x 10^k apart) inside [lo, hi]."""
    raw = max(hi - lo, 1.0) / max(count - 1, 1)
    magnitude = 10 ** max(0, math.floor(math.log10(raw)))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return list(range(int(first), int(math.floor(hi)) + 1, int(step)))


def ema(values: list[float], alpha: float) -> list[float]:
    """Exponential moving average (alpha = weight of the history, 0 = no smoothing), bias-corrected."""
    if alpha <= 0:
        return list(values)
    out: list[float] = []
    avg, weight = 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(out[-1] if out else v)
            continue
        avg = alpha * avg + (1 - alpha) * v
        weight = alpha * weight + (1 - alpha)
        out.append(avg / weight)
    return out
