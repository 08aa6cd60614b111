"""The advanced steps' figures: (j) a 10-way parallel fan-out and fan-in beside a Celery
chord of 10 no-op tasks, and (k) a 1,000-iteration loop's cost per iteration at its end
over its cost at its start."""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Final

from bench import noop_tool
from bench.harness import Stack
from bench.report import Metric
from bench.scenarios import UNLIMITED, start_all
from tests.execution_helpers import step, transform, workflow

WIDTH: Final = 10
LOOP_ITERATIONS: Final = 1000


def metrics() -> dict[str, Metric]:
    return {
        "j": Metric(
            "j",
            f"{WIDTH}-way parallel fan-out/fan-in ÷ Celery chord of {WIDTH} no-ops",
            "executions/s",
            "chords/s",
            0.5,
            True,
        ),
        "k": Metric(
            "k",
            f"{LOOP_ITERATIONS}-iteration loop: last-decile iteration cost ÷ first-decile",
            "ms",
            "ms",
            1.5,
            False,
        ),
    }


def fan_out(width: int = WIDTH) -> dict[str, Any]:
    """input -> fan (parallel, join all) over `width` dispatched no-op steps -> done."""
    noop = {"tool": noop_tool.NAME, "arguments": {}}
    branches = [f"b{i}" for i in range(width)]
    return workflow(
        step("input", "input", "fan", name="Input"),
        step("fan", "parallel", "done", name="Fan out", config={"branches": branches}),
        *(step(b, "tool", name=f"Branch {b}", config=noop) for b in branches),
        step("done", "output", name="Done", config={"values": {"joined": "$.fan.succeeded"}}),
    )


def long_loop() -> dict[str, Any]:
    """input -> each (over $.input.items) [add -> each] -> done: inline iterations."""
    return workflow(
        step("input", "input", "each", name="Input"),
        step(
            "each",
            "loop",
            "done",
            name="Each",
            config={"over": "$.input.items", "body": "add"},
        ),
        transform("add", "each", {"n": "$.each.item", "at": "$.each.index"}, name="Add"),
        step("done", "output", name="Done", config={"values": {"count": "$.each.count"}}),
    )


@dataclass(frozen=True)
class Rate:
    executions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.executions / self.seconds


async def fan_outs_per_second(stack: Stack, executions: int) -> Rate:
    """(j) system: `executions` fan-out workflows started at once, to the last completion."""
    tenant = await stack.tenant(fan_out(), max_concurrent_executions=UNLIMITED)
    began = time.time()
    await start_all(stack, tenant, executions)
    await stack.observer.wait(tenant.id, executions, patience=300.0)
    finished = (await stack.observer.last_completion(tenant.id)).timestamp()
    await stack.observer.release()
    return Rate(executions, finished - began)


@dataclass(frozen=True)
class Growth:
    first: float
    last: float
    seconds: float
    first_span: float
    """Seconds per iteration over the first tenth, end to end: the hops between chains and
    their commits included (the medians leave them out)."""
    last_span: float


async def loop_growth(stack: Stack, iterations: int = LOOP_ITERATIONS) -> Growth:
    """(k): one `iterations`-long loop; the median gap between consecutive iterations'
    finishes in its first tenth and in its last (the median keeps the hop between two
    chains of inline steps, one in 64, from weighing in)."""
    tenant = await stack.tenant(long_loop(), max_concurrent_executions=UNLIMITED)
    began = time.monotonic()
    await start_all(stack, tenant, 1, clients=1, value={"items": list(range(iterations))})
    await stack.observer.wait(tenant.id, 1, patience=600.0)
    seconds = time.monotonic() - began
    finishes = await stack.observer.finishes(tenant.id, "add")
    await stack.observer.release()
    ordered = [
        moment.timestamp()
        for _, moment in sorted(finishes, key=lambda found: int(found[0].rsplit(":", 1)[1]))
    ]
    if len(ordered) != iterations:
        raise RuntimeError(f"the loop finished {len(ordered)} of {iterations} iterations")
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    tenth = max(len(gaps) // 10, 1)
    return Growth(
        statistics.median(gaps[:tenth]),
        statistics.median(gaps[-tenth:]),
        seconds,
        sum(gaps[:tenth]) / tenth,
        sum(gaps[-tenth:]) / tenth,
    )
