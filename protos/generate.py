"""Regenerate the Python code of the `wfe.v1` API next to its .proto files.

Run `python protos/generate.py` after editing a .proto; `--out DIR` writes elsewhere,
which is how the test suite checks that the checked-in code is current. Only `wfe/` is
generated: `google/api/` holds googleapis' `annotations.proto` and `http.proto` (Apache-2.0)
for the `google.api.http` options, whose Python code comes from googleapis-common-protos.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent


def generate(out: Path) -> None:
    """Write `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` for every .proto under `wfe/`."""
    well_known = resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("wfe/**/*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *sources,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
