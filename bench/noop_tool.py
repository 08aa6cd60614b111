"""`bench_noop`: a dispatched tool that returns at once, for the dispatched-steps figure (a).

Declared as acting outside (`ToolMode.DISPATCHED`), so the engine runs each of its steps
as it runs an HTTP call (claimed and committed, then run under a lease), but with nothing
to wait for: what remains is the engine's own cost of a dispatched step. It is not a
product tool: `declare` writes a throwaway distribution's metadata naming it under the
`wfe.tools` entry point group, and the harness puts that folder on the PYTHONPATH of the
bench's own serve, worker and beat, whose `importlib.metadata` finds it there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Final

from engine.tools import ENTRY_POINT_GROUP, ToolCall, ToolMode, ToolSpec
from engine.tools.registry import closed_object
from foundation.settings import Settings

NAME: Final = "bench_noop"
DISTRIBUTION: Final = "wfe_bench_tools-0.dist-info"


class NoopTool:
    """No arguments, an empty output, no wait."""

    spec: ClassVar[ToolSpec] = ToolSpec(
        name=NAME,
        description="Does nothing, as a tool acting outside would if the outside answered at once.",
        arguments_schema=closed_object({}),
        output_schema=closed_object({}),
        mode=ToolMode.DISPATCHED,
    )

    def __init__(self, settings: Settings) -> None:
        pass

    async def run(self, call: ToolCall) -> Any:
        return {}


def declare(folder: Path) -> Path:
    """Write the distribution naming `NoopTool` into `folder`; the folder, for PYTHONPATH."""
    info = folder / DISTRIBUTION
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wfe-bench-tools\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{NAME} = {__name__}:{NoopTool.__name__}\n"
    )
    return folder
