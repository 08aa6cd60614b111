"""The one registry of tools: what each declares, and the tools a process has built.

Every tool, built-in or plugged in, is registered the same way: an entry point of the
`wfe.tools` group names its factory, which carries the tool's `ToolSpec` (name,
arguments and output schemas, inline or dispatched, lowest tier) and builds the tool
from the service `Settings`. Validation and `ListStepTypes` read the specs
(`installed()`); the engine runs the tools a `ToolRegistry` built. The engine never
names a tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tenancy import TenantId
from tiers import PLANS, StepTypeAccess, Tier

if TYPE_CHECKING:
    from foundation.settings import Settings

ENTRY_POINT_GROUP: Final = "wfe.tools"
TOOL_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ADAPTER_NAME: Final = re.compile(r"^(?=.{1,100}$)[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,3}$")
"""A custom adapter's name may have a vendor prefix: `okta.deactivate_user`."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One attempt of a tool step: who asks, with what arguments, and how long it may take.

    `idempotency_key` is the same on every delivery of the same attempt, so an external
    system that honours it applies the attempt's effect once however often it is sent.
    """

    tenant_id: TenantId
    execution_id: str
    step_id: str
    attempt: int
    arguments: Mapping[str, Any]
    timeout_seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] | None = None
    """A test run's record of what the step saw (`engine.traces`); None outside test runs."""

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.step_id}:{self.attempt}"


class StepFailure(Exception):
    """A step attempt failed; the step's retry and error policies decide what follows.

    Args:
        code: Machine-readable, lower_snake_case (e.g. `external_service_error`); a
            step's `non_retryable_codes` name these.
        message: Readable, safe to show the tenant.
        details: More context (a status line, a timeout), also shown.
        retryable: False when trying again cannot help (a refused address, bad arguments).
    """

    def __init__(
        self, code: str, message: str, *, details: str = "", retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def closed_object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON Schema object with exactly `properties` (none other may appear)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


class ToolMode(StrEnum):
    """Where a tool may run, which decides how the engine runs its steps."""

    INLINE = "inline"
    """Touches nothing outside the execution: run inside the transaction that records it."""
    DISPATCHED = "dispatched"
    """Acts outside (a call, a message): claimed and committed first, then run under a lease."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a tool declares: enough to validate, list and schedule its steps without it."""

    name: str
    description: str
    arguments_schema: dict[str, Any]
    output_schema: dict[str, Any]
    mode: ToolMode
    minimum_tier: Tier = Tier.FREE
    cpu_bound: bool = False
    """A dispatched tool that computes rather than waits: its steps hold a worker process
    each. Every other dispatched tool mostly awaits I/O, so a worker process keeps many
    of its steps in flight on its event loop and one tenant's slow calls never hold the
    processes that another tenant's steps need."""
    adapter: bool = False
    """A custom adapter (`custom` steps): Enterprise only, and enabled tenant by tenant."""

    @property
    def access(self) -> StepTypeAccess:
        """The step-type access a plan needs to use the tool (its minimum tier's)."""
        return PLANS[self.minimum_tier].step_types

    def problems(self) -> Iterator[str]:
        """What is wrong with the declaration itself (a plug-in is refused at start)."""
        if self.adapter:
            if not ADAPTER_NAME.fullmatch(self.name):
                yield f"adapter name {self.name!r} is not dotted lower_snake_case (at most 100)"
            if self.minimum_tier is not Tier.ENTERPRISE:
                yield f"adapter {self.name!r} must declare the enterprise tier"
        elif not TOOL_NAME.fullmatch(self.name):
            yield f"tool name {self.name!r} is not lower_snake_case (at most 63 characters)"
        for label, schema in (("arguments", self.arguments_schema), ("output", self.output_schema)):
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as error:
                yield f"{label} schema of {self.name!r} is invalid: {error.message}"


class Tool(Protocol):
    """A built-in or plugged-in action, built from settings by its factory."""

    spec: ToolSpec

    async def run(self, call: ToolCall) -> Any:
        """The step's output (JSON-like, matching `spec.output_schema`), or raise `StepFailure`."""
        ...


class ToolFactory(Protocol):
    """What a `wfe.tools` entry point names: a class or callable with a `spec`."""

    spec: ToolSpec

    def __call__(self, settings: Settings) -> Tool: ...


class ToolCatalog:
    """The declared tools by name: what validation, `ListStepTypes` and the engine agree on."""

    def __init__(self, factories: Mapping[str, ToolFactory]) -> None:
        for name, factory in factories.items():
            spec = getattr(factory, "spec", None)
            if not isinstance(spec, ToolSpec) or not callable(factory):
                raise ToolRegistrationError(f"entry point {name!r} names no tool factory")
            if spec.name != name:
                raise ToolRegistrationError(
                    f"entry point {name!r} declares a tool named {spec.name!r}"
                )
            problems = list(spec.problems())
            if problems:
                raise ToolRegistrationError("; ".join(problems))
        self._factories = dict(sorted(factories.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def spec(self, name: str) -> ToolSpec | None:
        factory = self._factories.get(name)
        return None if factory is None else factory.spec

    def specs(self) -> list[ToolSpec]:
        return [factory.spec for factory in self._factories.values()]

    def names(self) -> list[str]:
        return list(self._factories)

    def build(self, settings: Settings) -> dict[str, Tool]:
        return {name: factory(settings) for name, factory in self._factories.items()}


class ToolRegistrationError(RuntimeError):
    """A plugged-in tool declares itself wrongly; the process refuses to start with it."""


def load(group: str = ENTRY_POINT_GROUP) -> ToolCatalog:
    """Every tool declared through the entry point `group`, checked."""
    return ToolCatalog({point.name: point.load() for point in entry_points(group=group)})


@cache
def installed() -> ToolCatalog:
    """The tools installed in this environment, loaded once per process."""
    return load()


class ToolRegistry:
    """The tools available to one process, built once from the settings."""

    def __init__(
        self,
        settings: Settings,
        tools: Mapping[str, Tool] | None = None,
        *,
        catalog: ToolCatalog | None = None,
    ) -> None:
        built = dict(tools) if tools is not None else (catalog or installed()).build(settings)
        for name, tool in built.items():
            if tool.spec.name != name:
                raise ToolRegistrationError(f"tool {name!r} is built as {tool.spec.name!r}")
        self._tools = built

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise StepFailure(
                "unknown_tool", f"no tool named {name!r} is installed", retryable=False
            )
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)
