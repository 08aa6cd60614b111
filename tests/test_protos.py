"""The API definition: lint-clean, and the checked-in Python code generated from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "protos" / "wfe"
BUF = ["npx", "--yes", "@bufbuild/buf@1.75.0"]


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for pattern in ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
        for path in root.rglob(pattern)
    }


def test_checked_in_code_matches_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        timeout=120,
    )
    fresh = generated_files(tmp_path / "wfe")
    assert fresh, "generation produced nothing"
    assert fresh == generated_files(GENERATED), "run `make protos` and commit the result"


def test_protos_pass_buf_lint() -> None:
    if shutil.which("npx") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires npx to run buf lint")
        pytest.skip("npx is not installed")
    result = subprocess.run(
        [*BUF, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
