"""Metric curves of two runs side by side: where they first diverge, the largest gap, the final values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

History = dict[str, list[tuple[int, float]]]

# Metrics written once when training is over (test results, best checkpoint score, model measures), not per epoch.
FINAL_PREFIXES = ("test/", "best/", "model/")
# Timings (training/measurements.py) differ on every run: shown side by side, never a mismatch.
TIMINGS = ("model/latency_ms",)
# Reports list the metrics a user reads first (the task's own) before optimiser and diagnostic curves.
_FIRST = ("train/", "val/", "test/", "best/")


def metric_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith(_FIRST) else 1, name)


def within(a: float, b: float, tolerance: float) -> bool:
    """``|a - b| <= tolerance``, relative to ``|a|`` when ``|a| > 1``; tolerance 0 means bit-identical."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if tolerance == 0:
        return a == b
    return abs(a - b) <= tolerance * max(1.0, abs(a))


@dataclass
class MetricComparison:
    """One metric of the original (``a``) against the other run (``b``)."""

    name: str
    compared: int = 0  # points present in both
    first_divergence: int | None = None  # first step (epoch) beyond tolerance
    largest_gap: float = 0.0
    largest_gap_step: int | None = None
    final_a: float | None = None
    final_b: float | None = None
    missing_in_b: list[int] = field(default_factory=list)  # steps a has and b lacks
    extra_in_b: int = 0  # steps b has beyond a's (the re-run of a pruned trial trains on)
    only_in: str | None = None  # "a" or "b" when the metric exists in one run only

    @property
    def is_final(self) -> bool:
        return self.name.startswith(FINAL_PREFIXES)

    @property
    def matches(self) -> bool:
        """b repeats a: every point of a is in b within tolerance (extra points or metrics in b are allowed)."""
        if self.name in TIMINGS:
            return True
        return self.only_in != "a" and not self.missing_in_b and self.first_divergence is None


@dataclass
class Comparison:
    metrics: list[MetricComparison]
    tolerance: float

    @property
    def matches(self) -> bool:
        return all(m.matches for m in self.metrics)

    @property
    def identical(self) -> bool:
        return self.matches and all(m.largest_gap == 0 for m in self.metrics if m.name not in TIMINGS)

    def first_divergence(self) -> tuple[int, list[str]] | None:
        """The earliest epoch where a per-epoch curve leaves the tolerance, with the curves that do."""
        steps = [m.first_divergence for m in self.metrics if m.first_divergence is not None and not m.is_final and m.name not in TIMINGS]
        if not steps:
            return None
        first = min(steps)
        return first, [m.name for m in self.metrics if m.first_divergence == first and not m.is_final]

    def summary(self) -> str:
        compared = [m for m in self.metrics if m.only_in is None and m.name not in TIMINGS]
        curves = [m for m in compared if not m.is_final]
        epochs = max((m.compared for m in curves), default=0)
        if self.identical:
            return f"all {len(compared)} metrics bit-identical ({len(curves)} curves over {epochs} epochs)"
        if self.matches:
            return f"all {len(compared)} metrics within tolerance {self.tolerance:g} ({len(curves)} curves over {epochs} epochs)"
        parts = []
        divergence = self.first_divergence()
        if divergence:
            parts.append(f"curves diverge from epoch {divergence[0]} ({', '.join(divergence[1][:4])}{', ...' if len(divergence[1]) > 4 else ''})")
        finals = [m.name for m in self.metrics if m.is_final and m.first_divergence is not None and m.name not in TIMINGS]
        if finals:
            parts.append(f"final metrics differ ({', '.join(finals[:4])})")
        missing = [m.name for m in self.metrics if m.only_in == "a" or m.missing_in_b]
        if missing:
            parts.append(f"missing in the re-run: {', '.join(missing[:4])}")
        return "; ".join(parts) + f" (tolerance {self.tolerance:g})"


def compare_histories(a: History, b: History, tolerance: float = 0.0) -> Comparison:
    """Compare every metric of ``a`` (the original) with ``b``, point by point on common steps."""
    rows = []
    for name in sorted(set(a) | set(b), key=metric_order):
        row = MetricComparison(name)
        points_a, points_b = dict(a.get(name, [])), dict(b.get(name, []))
        if not points_a or not points_b:
            row.only_in = "a" if points_a else "b"
        row.final_a = a[name][-1][1] if a.get(name) else None
        row.final_b = b[name][-1][1] if b.get(name) else None
        row.extra_in_b = len(set(points_b) - set(points_a)) if points_a else 0
        for step in sorted(points_a):
            if step not in points_b:
                if points_b:
                    row.missing_in_b.append(step)
                continue
            value_a, value_b = points_a[step], points_b[step]
            row.compared += 1
            gap = _gap(value_a, value_b)
            if gap > row.largest_gap:
                row.largest_gap, row.largest_gap_step = gap, step
            if row.first_divergence is None and not within(value_a, value_b, tolerance):
                row.first_divergence = step
        rows.append(row)
    return Comparison(rows, tolerance)


def _gap(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b)
