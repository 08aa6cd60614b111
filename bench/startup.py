"""`python -m bench.startup [--repeat N] [--no-dev]`: how long `wfe` takes to start, as ratios.

Each round runs, back to back and in a rotating order, the floor (`python -c pass` on the
same interpreter), `wfe --help`, `wfe workflow --help` and a client command that fails fast
against a closed port; then, unless `--no-dev`, a warm `wfe dev` until it listens. Every
figure is printed beside its ratio to the floor of the same rounds, so a loaded machine
moves both.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = [sys.executable, "-c", "pass"]
HELP_TARGET = 8.0  # `wfe --help` within 8x the floor


def wfe() -> list[str]:
    """The installed `wfe` script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "wfe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def elapsed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def to_listening(env: dict[str, str]) -> float:
    """Seconds from starting `wfe dev` to its "wfe listening" line."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*wfe(), "dev", "--address", closed_address()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("wfe listening on"):
                return time.perf_counter() - started
        raise RuntimeError(f"wfe dev exited with {process.wait()} before listening")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--no-dev", action="store_true", help="skip the wfe dev rows")
    options = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="wfe-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(
        WFE_DATA_DIR=str(data / "data"),
        WFE_LOG_LEVEL="WARNING",
        WFE_GATEWAY_LISTEN_ADDRESS="127.0.0.1:0",  # never competes for the default port
    )
    client = [*wfe(), "workflow", "list", "--tenant", "t", "--token", "t"]
    cases = {
        "python -c pass": FLOOR,
        "wfe --help": [*wfe(), "--help"],
        "wfe workflow --help": [*wfe(), "workflow", "--help"],
        "wfe workflow list, no server": [*client, "--address", closed_address()],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for command in cases.values():  # warm the file cache and the bytecode
        elapsed(command, env)
    if not options.no_dev:
        times["wfe dev, warm, to listening"] = []
        to_listening(env)  # the cold run: creates and migrates the database
    names = list(times)
    for round_ in range(options.repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            if name in cases:
                times[name].append(elapsed(cases[name], env))
            else:
                times[name].append(to_listening(env))

    floor = times["python -c pass"]
    print(f"{'command':<30} {'median':>9} {'x floor':>8}  (spread over {options.repeat} rounds)")
    for name, samples in times.items():
        ratios = [sample / base for sample, base in zip(samples, floor, strict=True)]
        spread = f"{min(ratios):.1f}..{max(ratios):.1f}"
        median = statistics.median(samples)
        print(f"{name:<30} {median * 1000:>7.0f}ms {statistics.median(ratios):>7.1f}x  {spread}")
    help_ratio = statistics.median(h / f for h, f in zip(times["wfe --help"], floor, strict=True))
    verdict = "PASS" if help_ratio <= HELP_TARGET else "MISS"
    print(f"wfe --help target: within {HELP_TARGET:g}x python -c pass: {verdict}")


if __name__ == "__main__":
    main()
