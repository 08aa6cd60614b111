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
    target: float | None
    """None: reported beside its floor, with no target of its own."""
    higher_is_better: bool
    absolute: bool = False
    """The target bounds the system's own median (in `unit_system`), not the ratio: for
    the few figures whose target the issue sets as an absolute value."""
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
    def system(self) -> float:
        return statistics.median(r.system for r in self.rounds)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        value = self.system if self.absolute else self.ratio
        return value >= self.target if self.higher_is_better else value <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "—"
        bound = ("≥ " if self.higher_is_better else "≤ ") + f"{self.target:g}"
        return f"{bound} {self.unit_system}" if self.absolute else bound

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
                metric.target_text,
                {True: "PASS", False: "MISS", None: ""}[metric.passed],
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
    if any(metric.absolute for metric in metrics):
        emit("a target with a unit bounds the system's median itself, not the ratio.")
    for metric in metrics:
        for note in metric.notes:
            emit(f"({metric.key}) {note}")
