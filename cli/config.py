"""Settings for the commands that run, migrate or administer the service."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from foundation.settings import (
    GatewaySettings,
    Settings,
    UnknownSettings,
    from_environment,
    gateway_from_environment,
)


def load(**overrides: Any) -> Settings:
    """`WFE_*` settings with `overrides`; a bad or unknown one is a usage error (exit 2)."""
    try:
        return from_environment(**overrides)
    except (ValidationError, UnknownSettings) as exc:
        raise typer.BadParameter(str(exc)) from exc


def load_gateway(**overrides: Any) -> GatewaySettings:
    """The gateway's `WFE_*` settings with `overrides`, refused as `load` refuses."""
    try:
        return gateway_from_environment(**overrides)
    except (ValidationError, UnknownSettings) as exc:
        raise typer.BadParameter(str(exc)) from exc
