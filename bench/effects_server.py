"""The tests' effects stub in a process of its own, so its threads never share the bench's GIL.

`python -m bench.effects_server` prints `effects listening on HOST:PORT` once it serves.
"""

from __future__ import annotations

import signal
import threading

from tests.effects_stub import serve_effects


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve_effects() as effects:
        print(f"effects listening on 127.0.0.1:{effects.port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
