"""CPU time spent by the bench's processes, read from /proc (Linux), no dependency.

A side's processes are the sessions the harness started them in (each its own session,
so a prefork worker's children are in its leader's), plus, for the system, the
PostgreSQL backends of the bench database. A session's time is user + system time of
each live member plus what its reaped children spent (`cutime`, `cstime`): a child
that exits inside a window moves its time into its parent's, so a difference of two
readings still holds it. Backends are separate processes of the postmaster, read one
by one: one that exits inside a window loses what it spent there.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
# Fields of /proc/<pid>/stat counted after the command's closing parenthesis.
SESSION, UTIME, STIME, CUTIME, CSTIME = 3, 11, 12, 13, 14


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # ended since it was listed
        return None
    return text[text.rindex(")") + 2 :].split()


def sessions_seconds(leaders: Collection[int]) -> float:
    """CPU seconds of every process in the sessions `leaders` lead, reaped children included."""
    ticks = 0
    for entry in os.scandir("/proc"):
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and int(fields[SESSION]) in leaders:
            ticks += sum(int(fields[i]) for i in (UTIME, STIME, CUTIME, CSTIME))
    return ticks / TICKS


def processes_seconds(pids: Collection[int]) -> dict[int, float]:
    """CPU seconds of each live process of `pids` (their own, not their children's)."""
    spent = {}
    for pid in pids:
        fields = _stat(pid)
        if fields:
            spent[pid] = (int(fields[UTIME]) + int(fields[STIME])) / TICKS
    return spent


@dataclass(frozen=True)
class Sample:
    """One reading: the sessions' total, and each database backend's own."""

    sessions: float
    backends: Mapping[int, float]


@dataclass(frozen=True)
class Spent:
    """CPU seconds over a window: the started processes, and the database backends."""

    processes: float
    postgres: float

    @property
    def total(self) -> float:
        return self.processes + self.postgres


def between(earlier: Sample, later: Sample) -> Spent:
    """What was spent from `earlier` to `later`; a backend born in between counts from 0."""
    postgres = sum(
        seconds - earlier.backends.get(pid, 0.0) for pid, seconds in later.backends.items()
    )
    return Spent(later.sessions - earlier.sessions, postgres)
