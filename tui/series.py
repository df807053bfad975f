"""Bounded series for live curves: a long run keeps a fixed number of points in memory.

The newest points stay at full resolution; when the buffer is full its older half is averaged in
pairs (bucketed), so a curve of a million steps still costs at most ``capacity`` points to hold and
to draw. No point is dropped without being folded into a bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class BoundedSeries:
    """(x, y) points, at most ``capacity`` of them; old points are averaged in pairs when full."""

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
        half -= half % 2
        old_x, old_y = self.xs[:half], self.ys[:half]
        merged_x = [(old_x[i] + old_x[i + 1]) / 2 for i in range(0, half, 2)]
        merged_y = [_mean2(old_y[i], old_y[i + 1]) for i in range(0, half, 2)]
        self.xs = merged_x + self.xs[half:]
        self.ys = merged_y + self.ys[half:]

    def last(self) -> tuple[float, float] | None:
        return (self.xs[-1], self.ys[-1]) if self.xs else None


def _mean2(a: float, b: float) -> float:
    if math.isfinite(a) and math.isfinite(b):
        return (a + b) / 2
    return a if math.isfinite(a) else b


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
