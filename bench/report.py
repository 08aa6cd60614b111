"""Ratios across rounds, and the table: no absolute figure is printed without its floor."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def p99(values: Sequence[float]) -> float:
    """The 99th percentile, interpolated between ranks (numpy's default)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@dataclass(frozen=True)
class Round:
    system: float
    floor: float

    @property
    def ratio(self) -> float:
        return self.system / self.floor


@dataclass
class Metric:
    """One row: what is compared with what, the target, and each round's pair of values."""

    key: str
    title: str
    unit_system: str
    unit_floor: str
    target: float
    higher_is_better: bool
    rounds: list[Round] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, system: float, floor: float) -> Round:
        measured = Round(system, floor)
        self.rounds.append(measured)
        return measured

    @property
    def ratio(self) -> float:
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def spread(self) -> tuple[float, float]:
        ratios = [r.ratio for r in self.rounds]
        return min(ratios), max(ratios)

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def describe(self, measured: Round) -> str:
        return (
            f"{self.key} {measured.system:.4g} {self.unit_system} vs "
            f"{measured.floor:.4g} {self.unit_floor} -> ratio {measured.ratio:.3g}"
        )


def _value(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.4g} {unit}"


def table(metrics: Sequence[Metric], emit: Callable[[str], None] = print) -> None:
    headers = ("metric", "system", "floor", "ratio", "spread", "target", "")
    rows = []
    for metric in metrics:
        if not metric.rounds:
            continue
        low, high = metric.spread
        rows.append(
            (
                f"({metric.key}) {metric.title}",
                _value([r.system for r in metric.rounds], metric.unit_system),
                _value([r.floor for r in metric.rounds], metric.unit_floor),
                f"{metric.ratio:.3g}",
                f"{low:.3g}..{high:.3g} (n={len(metric.rounds)})",
                ("≥ " if metric.higher_is_better else "≤ ") + f"{metric.target:g}",
                "PASS" if metric.passed else "MISS",
            )
        )
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    emit(line)
    emit("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    emit(line)
    for row in rows:
        emit("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    emit(line)
    emit("system and floor: medians over rounds; ratio: median of the per-round ratios.")
    for metric in metrics:
        for note in metric.notes:
            emit(f"({metric.key}) {note}")
