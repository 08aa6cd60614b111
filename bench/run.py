"""`python -m bench.run [--executions N] [--quick] [--only PART]`.

The default run measures (a) to (e), with (a'), (b16), (c'), (e500), the CPU per step, and
the advanced steps' (j) and (k); `--only hostile` runs (e) alone, `--only growth` (e500)
alone, `--only advanced` (j) and (k), and `--only streams` the
live-stream figures (f) and (g), which the default run leaves out for time; `--only
gateway` the gateway's figures (h) and (i), also left out of the default run; `--only
operations` the scale-out (l) and the cost of metrics and tracing (m), also left out.

Each round measures every floor and its system counterpart back to back, the order
alternating between rounds so drift on a noisy machine falls on both sides; the table
reports the median ratio and its spread over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from bench import advanced, floors, gateway, hostile, operations, scenarios, streams
from bench.harness import Stack, StackOptions, open_stack
from bench.report import Metric, p99, table
from bench.scenarios import Throughput
from bench.streams import Delivery, StreamPlan
from foundation.settings import Settings
from tests.engine_stack import broker_unavailable_reason
from tests.execution_helpers import three_steps

F = TypeVar("F")
S = TypeVar("S")
CLIENTS = 16
QUICK_SOCKETS = 200
"""(i) subscribers a side in --quick: a thousand sockets' set-up alone takes most of a minute."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    executions: int
    calls_per_client: int
    light: int
    light_spacing: float
    heavy: int  # the least flood; see flood_size
    warmup: int
    hostile_seconds: float
    attackers: int
    streams: StreamPlan
    sockets: StreamPlan
    """(i): the (f) plan with `--sockets` subscribers on each side."""
    gateway_seconds: float


def plan_of(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    executions = args.executions or (60 if quick else 200)
    stream_plan = StreamPlan(
        subscribers=args.subscribers,
        rate=args.event_rate,
        tenants=args.stream_tenants,
        processes=args.stream_clients,
        seconds=5.0 if quick else 10.0,
        settle=1.0 if quick else 2.0,
        watchers=args.watchers,
    )
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        executions=executions,
        calls_per_client=args.calls or (8 if quick else 15),
        light=10 if quick else 40,
        # Well under the system's own capacity, so that alone really is alone.
        light_spacing=0.4,
        heavy=max(executions, 120),
        warmup=12 if quick else 30,
        hostile_seconds=5.0 if quick else 10.0,
        attackers=4,
        streams=stream_plan,
        sockets=replace(
            stream_plan, subscribers=args.sockets or (QUICK_SOCKETS if quick else 1000)
        ),
        gateway_seconds=5.0 if quick else 10.0,
    )


IO_STEPS_PER_PROCESS: int = int(Settings.model_fields["worker_io_steps"].default)
"""Flood calls a worker process keeps in flight (`WFE_WORKER_IO_STEPS`, left at its default)."""


def flood_size(plan: Plan, worker_processes: int) -> int:
    """The unfinished slow executions that keep every worker's I/O slots full through the
    light series.

    Each flood execution's HTTP call takes `scenarios.FLOOD_CALL_SECONDS`, so the workers
    drain the flood at (processes x I/O slots) / that many executions a second at most,
    however fast the machine: twice the light series' window at that rate, plus the slots
    themselves, outlasts the series. The flood is topped up to that backlog after what
    drains while it is started (`scenarios.fill_backlog`); each round reports whether it
    outlasted the series.
    """
    in_flight = worker_processes * IO_STEPS_PER_PROCESS
    drain_per_second = in_flight / scenarios.FLOOD_CALL_SECONDS
    window = plan.light * plan.light_spacing + 5.0
    return max(plan.heavy, math.ceil(2 * window * drain_per_second) + in_flight)


def metrics() -> dict[str, Metric]:
    """The default run's rows; (f) and (g) are `streams.metrics`, run with --only streams."""
    starts = f"StartExecution p99 @{CLIENTS} clients"
    return {
        "a": Metric("a", "3 dispatched no-op steps, steps/s", "steps/s", "tasks/s", 0.7, True),
        "a'": Metric("a'", "3-step inline workflows, steps/s", "steps/s", "tasks/s", 1.5, True),
        "b": Metric("b", f"{starts}, 1 tenant", "ms", "ms", 3.0, False),
        "b16": Metric("b16", f"{starts}, {CLIENTS} tenants", "ms", "ms", 3.0, False),
        "c": Metric("c", "PostgreSQL commits per dispatched step", "commits", "steps", 1.5, False),
        "c'": Metric(
            "c'", "PostgreSQL commits per inline execution", "commits", "executions", 2.0, False
        ),
        "d": Metric("d", "light tenant start-to-first-step p99", "ms", "ms", 1.5, False),
        "e": Metric(
            "e", "other tenant's GetExecution p99 under an attacker ÷ alone", "ms", "ms", 2.0, False
        ),
        "e500": Metric(
            "e500",
            "500-step execution: last-decile step cost ÷ first-decile",
            "ms",
            "ms",
            1.5,
            False,
        ),
        "cpu": Metric("cpu", "CPU ms per step, (a') run", "ms/step", "ms/task", None, False),
        **advanced.metrics(),
    }


async def in_order(
    system_first: bool,
    floor: Callable[[], Awaitable[F]],
    system: Callable[[], Awaitable[S]],
) -> tuple[F, S]:
    """(floor result, system result), run in the round's order."""
    if system_first:
        second = await system()
        return await floor(), second
    first = await floor()
    return first, await system()


def _commit_note(number: int, run: Throughput, counted: str) -> str:
    """(c), (c'): a round's counts, and what commits besides the starts and steps."""
    return (
        f"round {number + 1}: {run.commits} commits for {run.executions} executions "
        f"({run.steps} {counted} steps), {run.commits / run.executions:.2f} per execution; "
        "besides the starts' and steps' own: NOTIFY wake-ups no commit carried, sweeps, "
        "notifications made, the projector's saved position, new pool connections (one "
        "each) and the idle system's commits while the counter settles. Starts took "
        f"{run.starts_seconds:.1f}s "
        f"of the {run.seconds:.1f}s"
    )


async def measure_throughput(
    stack: Stack, plan: Plan, results: dict[str, Metric], number: int
) -> Throughput:
    """(a'), (c') and CPU, then (a) and (c), each system run beside a chain floor of its own.

    Returns the (a) run.
    """
    system_first = number % 2 == 1
    a, inline_a, c, inline_c, cpu = (results[k] for k in ("a", "a'", "c", "c'", "cpu"))
    chains, inline = await in_order(
        system_first,
        lambda: floors.celery_chain_rate(stack, plan.executions),
        lambda: scenarios.steps_per_second(stack, plan.executions, count_commits=True),
    )
    print("  " + inline_a.describe(inline_a.add(inline.rate, chains.rate)), flush=True)
    print("  " + inline_c.describe(inline_c.add(inline.commits, inline.executions)), flush=True)
    inline_c.notes.append(_commit_note(number, inline, "inline"))
    per_step = inline.cpu.total * 1000 / inline.steps
    print("  " + cpu.describe(cpu.add(per_step, chains.cpu_seconds * 1000 / chains.tasks)))
    cpu.notes.append(
        f"round {number + 1}: system {inline.cpu.total:.2f} s for {inline.steps} steps in "
        f"{inline.seconds:.1f} s (serve, worker and beat {inline.cpu.processes:.2f} s, "
        f"PostgreSQL backends {inline.cpu.postgres:.2f} s); Celery floor "
        f"{chains.cpu_seconds:.2f} s for {chains.tasks} tasks in {chains.seconds:.1f} s"
    )

    chains, dispatched = await in_order(
        system_first,
        lambda: floors.celery_chain_rate(stack, plan.executions),
        lambda: scenarios.dispatched_per_second(stack, plan.executions),
    )
    print("  " + a.describe(a.add(dispatched.rate, chains.rate)), flush=True)
    print("  " + c.describe(c.add(dispatched.commits, dispatched.steps)), flush=True)
    c.notes.append(_commit_note(number, dispatched, "dispatched"))
    return dispatched


async def measure_starts(stack: Stack, plan: Plan, results: dict[str, Metric], number: int) -> None:
    """(b) and (b16): StartExecution p99 beside the no-op server's, for the same requests.

    (b): every client starts the same tenant's workflow; (b16): each client its own tenant.
    """
    system_first = number % 2 == 1
    single = await scenarios.start_tenants(stack, 1)
    many = await scenarios.start_tenants(stack, CLIENTS)
    for key, tenants in (("b", single * CLIENTS), ("b16", many)):
        clients = [scenarios.start_call(tenant) for tenant in tenants]
        calls = plan.calls_per_client
        noop, starts = await in_order(
            system_first,
            partial(floors.noop_latencies, stack, clients, calls=calls),
            partial(scenarios.start_latencies, stack, clients, calls=calls),
        )
        b = results[key]
        print("  " + b.describe(b.add(p99(starts) * 1000, p99(noop) * 1000)), flush=True)


async def bench(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    results = metrics()
    d = results["d"]
    began = time.monotonic()
    async with open_stack(options) as stack:
        print(f"stack up in {time.monotonic() - began:.0f}s; logs in {options.log_dir}", flush=True)
        await scenarios.warm_up(stack, plan.warmup)
        await floors.celery_chain_rate(stack, plan.warmup)
        warm = [scenarios.start_call(await stack.tenant(three_steps()))] * CLIENTS
        await floors.noop_latencies(stack, warm, calls=3)
        print(f"warmed up at {time.monotonic() - began:.0f}s", flush=True)
        for number in range(plan.rounds):
            system_first = number % 2 == 1
            print(
                f"round {number + 1}/{plan.rounds} ({'system' if system_first else 'floor'} first)"
            )
            await measure_throughput(stack, plan, results, number)
            await measure_starts(stack, plan, results, number)

            flood = flood_size(plan, options.concurrency)
            alone, loaded = await in_order(
                system_first,
                lambda: scenarios.light_alone(stack, plan.light, plan.light_spacing),
                partial(scenarios.light_under_load, stack, plan.light, plan.light_spacing, flood),
            )
            measured = d.add(p99(loaded.latencies) * 1000, p99(alone.latencies) * 1000)
            print("  " + d.describe(measured), flush=True)
            if not loaded.saturated:
                d.notes.append(
                    f"round {number + 1}: the heavy flood ended before the light tenant's "
                    "last first step; raise --executions (the least flood)"
                )
            for label, side in (("under load", loaded), ("alone", alone)):
                print(
                    f"  (d) {label}: start-to-first-step {scenarios.summary(side.latencies)}; "
                    f"of which the StartExecution call {scenarios.summary(side.start_calls)}",
                    flush=True,
                )
            print(
                f"  (d) heavy executions still unfinished when the light ones were: "
                f"{loaded.heavy_backlog_at_end} (when they started: {flood})",
                flush=True,
            )
            await measure_hostile(stack, plan, results["e"])
            await measure_growth(stack, results["e500"])
            await measure_advanced(stack, plan, results, number)
        results["c"].notes.append(
            "bench polling commits nothing (its reads share one transaction, rolled back); "
            "tenant and workflow set-up commit before the window opens (so too for (c'))"
        )
    print(f"finished in {time.monotonic() - began:.0f}s", flush=True)
    return results


async def measure_hostile(stack: Stack, plan: Plan, e: Metric) -> None:
    """(e): tenant B's GetExecution p99 while tenant A sends the attack corpus, over alone."""
    measured = await hostile.other_tenant_under_attack(stack, plan.hostile_seconds, plan.attackers)
    print("  " + e.describe(e.add(p99(measured.attacked) * 1000, p99(measured.alone) * 1000)))
    print(
        f"  (e) alone: {len(measured.alone)} reads, {scenarios.summary(measured.alone)}; "
        f"under attack: {len(measured.attacked)} reads, {scenarios.summary(measured.attacked)}; "
        f"{plan.attackers} attackers sent {measured.attacks_sent} attacks, answered "
        + ", ".join(f"{code} {n}" for code, n in sorted(measured.attacks_by_code.items())),
        flush=True,
    )


async def measure_growth(stack: Stack, e500: Metric) -> None:
    """(e500): a 500-step execution's per-step cost at its end over its cost at its start."""
    growth = await scenarios.long_execution_growth(stack)
    print("  " + e500.describe(e500.add(growth.last * 1000, growth.first * 1000)), flush=True)


async def measure_advanced(
    stack: Stack, plan: Plan, results: dict[str, Metric], number: int
) -> None:
    """(j) beside its chord floor, in the round's order; then (k)."""
    j, k = results["j"], results["k"]
    fan_outs = max(plan.executions // 4, 10)
    chords, fanned = await in_order(
        number % 2 == 1,
        lambda: floors.celery_chord_rate(stack, fan_outs, advanced.WIDTH),
        lambda: advanced.fan_outs_per_second(stack, fan_outs),
    )
    print("  " + j.describe(j.add(fanned.rate, chords.rate)), flush=True)
    if number == 0:
        j.notes.append(
            f"{fan_outs} of each a round, sent at once: a workflow of input, a parallel of "
            f"{advanced.WIDTH} dispatched `bench_noop` steps joined by `all`, and an output; "
            f"a Celery chord of {advanced.WIDTH} no-op tasks and a callback on the floor worker"
        )
    growth = await advanced.loop_growth(stack)
    print("  " + k.describe(k.add(growth.last * 1000, growth.first * 1000)), flush=True)
    print(
        f"  (k) the loop ran in {growth.seconds:.1f}s; per iteration end to end (commits and "
        f"hops between chains included): first tenth {growth.first_span * 1000:.2f} ms, "
        f"last tenth {growth.last_span * 1000:.2f} ms "
        f"(ratio {growth.last_span / growth.first_span:.2f})",
        flush=True,
    )


async def bench_advanced(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (j) and (k), in `plan.rounds` rounds on one stack."""
    results = advanced.metrics()
    async with open_stack(options) as stack:
        await scenarios.warm_up(stack, plan.warmup)
        await floors.celery_chain_rate(stack, plan.warmup)
        for number in range(plan.rounds):
            print(f"round {number + 1}/{plan.rounds}", flush=True)
            await measure_advanced(stack, plan, results, number)
    return results


async def bench_growth(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (e500), in `plan.rounds` rounds on one stack."""
    results = {"e500": metrics()["e500"]}
    async with open_stack(options) as stack:
        for number in range(plan.rounds):
            print(f"round {number + 1}/{plan.rounds}", flush=True)
            await measure_growth(stack, results["e500"])
    return results


async def measure_streams(
    stack: Stack, plan: Plan, results: dict[str, Metric], number: int
) -> None:
    """(f) and (g), each side by side with its floor, in the round's order."""
    system_first = number % 2 == 1
    f, f50, f99, g = (results[k] for k in ("f", "f50", "f99", "g"))
    floor, system = await in_order(
        system_first,
        lambda: streams.floor_delivery(stack, plan.streams),
        lambda: streams.system_delivery(stack, plan.streams),
    )
    offered = plan.streams.offered
    if not floor.rate:
        raise RuntimeError(f"the streaming floor delivered nothing: {floor.summary(offered)}")
    print("  " + f.describe(f.add(system.rate, floor.rate)))
    print("  " + f50.describe(f50.add(system.percentile_ms("p50"), floor.percentile_ms("p50"))))
    print("  " + f99.describe(f99.add(system.percentile_ms("p99"), floor.percentile_ms("p99"))))
    print(f"  (f) system: {system.summary(offered)}")
    print(f"  (f) floor: {floor.summary(offered)}", flush=True)
    if number == 0:
        f.notes.append(
            f"{plan.streams.subscribers} streams over {plan.streams.tenants} tenant(s) and "
            f"{plan.streams.processes} client processes; each event reaches "
            f"{plan.streams.subscribers // plan.streams.tenants} streams, so "
            f"{plan.streams.offered:.0f} msg/s are offered; received counts in a "
            f"{plan.streams.seconds:g} s window"
        )
        f99.notes.append(
            "the target is the issue's absolute 100 ms on the system's p99; the floor's p99 "
            "is beside it. Latency runs from the time stamped before the writer's insert"
        )
        g.notes.append(
            f"the {plan.streams.watchers} subscribers' client processes share the cores with "
            "the engine, as the streams' own cost does"
        )
    unwatched, watched = await in_order(
        system_first,
        lambda: streams.steps_unwatched(stack, plan.executions),
        lambda: streams.steps_watched(stack, plan.streams, plan.executions),
    )
    print("  " + g.describe(g.add(watched.run.rate, unwatched.rate)))
    failed = ", ".join(f"{c} {n}" for c, n in sorted(watched.errors.items())) or "none"
    received = watched.received or [0]
    print(
        f"  (g) each of {len(watched.received)} subscribers received {min(received)}.."
        f"{max(received)} events by {streams.CATCH_UP_SECONDS:g} s after the last completion; "
        f"the run's executions wrote {watched.events} (+ the workflow's replayed events); "
        f"failed streams: {failed}",
        flush=True,
    )


async def bench_streams(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (f) and (g), in `plan.rounds` rounds on one stack."""
    results = streams.metrics(plan.streams)
    async with open_stack(options) as stack:
        print(f"stack up; logs in {options.log_dir}", flush=True)
        await scenarios.warm_up(stack, plan.warmup)
        for number in range(plan.rounds):
            system_first = number % 2 == 1
            print(
                f"round {number + 1}/{plan.rounds} ({'system' if system_first else 'floor'} first)",
                flush=True,
            )
            await measure_streams(stack, plan, results, number)
    return results


async def bench_hostile(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (e), in `plan.rounds` rounds on one stack."""
    results = {"e": metrics()["e"]}
    async with open_stack(options) as stack:
        await scenarios.warm_up(stack, plan.warmup)
        for number in range(plan.rounds):
            print(f"round {number + 1}/{plan.rounds}", flush=True)
            await measure_hostile(stack, plan, results["e"])
    return results


async def measure_gateway(
    stack: Stack,
    plan: Plan,
    results: dict[str, Metric],
    front: gateway.Gateway,
    read: gateway.Reader,
    number: int,
) -> None:
    """(h) and (i), each side by side with direct gRPC, in the round's order."""
    system_first = number % 2 == 1
    h, i = results["h"], results["i"]
    direct, via = await gateway.gets(stack, front, read, plan.gateway_seconds, system_first)
    print("  " + h.describe(h.add(p99(via) * 1000, p99(direct) * 1000)))
    print(
        f"  (h) via the gateway: {len(via)} GETs, {scenarios.summary(via)}; "
        f"direct: {len(direct)} calls, {scenarios.summary(direct)}",
        flush=True,
    )
    streamed, sockets = await gateway.deliveries(stack, front, plan.sockets, system_first)
    print("  " + i.describe(i.add(sockets.percentile_ms("p99"), streamed.percentile_ms("p99"))))
    offered = plan.sockets.offered
    side: Delivery
    for label, side in (("WebSockets", sockets), ("gRPC streams", streamed)):
        print(f"  (i) {label}: {side.summary(offered)}", flush=True)
    if number == 0:
        s = plan.sockets
        h.notes.append(
            "one client each side, back to back for "
            f"{plan.gateway_seconds:g} s; REST is httpx on one HTTP/1.1 keep-alive connection "
            "to one `wfe gateway` process, which calls the same server over its one channel"
        )
        i.notes.append(
            f"{s.subscribers} WebSockets (one gateway process, one Subscribe each) vs "
            f"{s.subscribers} gRPC streams, each over {s.tenants} tenants and "
            f"{s.processes} client processes, {s.rate:g} events/s "
            f"({offered:.0f} msg/s offered), {s.seconds:g} s window"
            + (
                f"; --quick runs {QUICK_SOCKETS} a side, not 1,000 (--sockets N to change)"
                if s.subscribers == QUICK_SOCKETS
                else ""
            )
        )


async def bench_gateway(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (h) and (i), in `plan.rounds` rounds on one stack and one gateway."""
    results = gateway.metrics(plan.sockets)
    async with open_stack(options) as stack:
        print(f"stack up; logs in {options.log_dir}", flush=True)
        await scenarios.warm_up(stack, plan.warmup)
        front = await gateway.start_gateway(stack)
        read = await gateway.reader(stack)
        for number in range(plan.rounds):
            system_first = number % 2 == 1
            print(
                f"round {number + 1}/{plan.rounds} "
                f"({'gateway' if system_first else 'direct'} first)",
                flush=True,
            )
            await measure_gateway(stack, plan, results, front, read, number)
    return results


async def bench_operations(plan: Plan, options: StackOptions) -> dict[str, Metric]:
    """Only (l), then (m), each in `plan.rounds` rounds on one stack, its system beside one
    more engine at a time; the OTLP sink outlives the engines, so their last exports at
    shutdown are counted too."""
    results = operations.metrics()
    with operations.Sink() as sink:
        async with open_stack(options) as stack:
            print(f"stack up; logs in {options.log_dir}", flush=True)
            await operations.scale_out(
                stack, plan.rounds, plan.executions, plan.warmup, results["l"]
            )
            await operations.observability(
                stack, sink, plan.rounds, plan.executions, plan.warmup, results["m"]
            )
        total = sink.counts()
    print(f"(m) OTLP sink in all: {total.describe()}", flush=True)
    results["m"].notes.append(
        f"the OTLP sink received in all (the last exports at shutdown included): {total.describe()}"
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--executions",
        type=int,
        help="(a), (a') executions and chains per round; the (d) flood is at least max(N, 120)",
    )
    parser.add_argument("--quick", action="store_true", help="one small round (< 2 min)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--calls", type=int, help="(b), (b16) StartExecution calls per client")
    parser.add_argument(
        "--broker", default="redis://127.0.0.1:6379/0", help="Celery broker for both sides"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes per side")
    parser.add_argument("--log-dir", type=Path, help="where process logs go (default: a temp dir)")
    parser.add_argument(
        "--only",
        choices=["hostile", "streams", "gateway", "growth", "advanced", "operations"],
        help="run one part: hostile = (e) alone; growth = (e500) alone; "
        "advanced = (j) and (k); "
        "streams = (f) and (g); gateway = (h) and (i); operations = (l) and (m)",
    )
    parser.add_argument(
        "--subscribers", type=int, default=1000, help="(f) streams on one server (1000)"
    )
    parser.add_argument(
        "--event-rate", type=float, default=200.0, help="(f) events committed per second (200)"
    )
    parser.add_argument(
        "--stream-tenants",
        type=int,
        default=10,
        help="(f) tenants the streams and events are spread over (10)",
    )
    parser.add_argument(
        "--stream-clients", type=int, default=4, help="(f, g) client processes per side (4)"
    )
    parser.add_argument(
        "--watchers", type=int, default=100, help="(g) subscribers attached to the run (100)"
    )
    parser.add_argument(
        "--sockets",
        type=int,
        help=f"(i) WebSockets, and gRPC streams, a side (1000; quick {QUICK_SOCKETS})",
    )
    args = parser.parse_args(argv)
    reason = broker_unavailable_reason(args.broker)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    plan = plan_of(args)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="wfe-bench-"))
    options = StackOptions(args.broker, args.concurrency, log_dir)
    s = plan.streams
    parts = {
        "core": f"(a), (a') {plan.executions} executions vs chains each; "
        f"(b), (b16) {CLIENTS} clients x {plan.calls_per_client} calls; "
        f"(d) {plan.light} light starts every {plan.light_spacing * 1000:.0f} ms "
        f"vs a flood of at least {plan.heavy}; "
        f"(e500) two {scenarios.LONG_STEPS}-step executions; ",
        "hostile": f"(e) {plan.hostile_seconds:g} s of reads alone and under "
        f"{plan.attackers} attackers; ",
        "growth": f"(e500) two {scenarios.LONG_STEPS}-step executions; ",
        "advanced": f"(j) {max(plan.executions // 4, 10)} {advanced.WIDTH}-way fan-outs vs "
        f"chords; (k) a {advanced.LOOP_ITERATIONS}-iteration loop; ",
        "streams": f"(f) {s.subscribers} streams over {s.tenants} tenant(s) and "
        f"{s.processes} client processes, {s.rate:g} events/s, {s.seconds:g} s window; "
        f"(g) {plan.executions} executions with and without {s.watchers} subscribers; ",
        "gateway": f"(h) {plan.gateway_seconds:g} s of GETs via the gateway and direct; "
        f"(i) {plan.sockets.subscribers} WebSockets vs gRPC streams over {s.tenants} tenant(s), "
        f"{s.rate:g} events/s, {s.seconds:g} s window; ",
        "operations": f"(l) {plan.executions} executions of (a)'s workflow on 1 server + 1 "
        f"worker vs 2 + 2; (m) the same with metrics and tracing off vs on; ",
    }
    # (f) and (g) add about five minutes to three rounds: they run only when asked for.
    chosen = [args.only] if args.only else ["core", "hostile", "advanced"]
    print(
        f"plan: {plan.rounds} round(s); {''.join(parts[k] for k in chosen)}"
        f"broker {args.broker}, worker concurrency {args.concurrency}",
        flush=True,
    )
    run = {
        "hostile": bench_hostile,
        "streams": bench_streams,
        "gateway": bench_gateway,
        "growth": bench_growth,
        "advanced": bench_advanced,
        "operations": bench_operations,
    }.get(args.only or "", bench)
    results = asyncio.run(run(plan, options))
    table(list(results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
