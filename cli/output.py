"""What commands print: aligned tables and fields for people, the message as JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from typing import Any

import typer
from google.protobuf import json_format


def show(message: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """The message as JSON for scripts, or as `render` lays it out for people."""
    if as_json:
        emit_json(message)
    else:
        render(message)


def emit_json(message: Any) -> None:
    """The message in the protobuf JSON mapping, with the .proto's snake_case names."""
    typer.echo(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> None:
    """Columns aligned under upper-case headers; `empty` on stderr when there is no row."""
    cells = [[str(cell) for cell in row] for row in rows]
    if not cells:
        typer.echo(empty, err=True)
        return
    lines = [[header.upper() for header in headers], *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    for line in lines:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        typer.echo("  ".join(padded).rstrip())


def fields(pairs: Iterable[tuple[str, str]]) -> None:
    """`name: value` lines, values aligned; pairs whose value is empty are left out."""
    shown = [(name, value) for name, value in pairs if value not in ("", "-")]
    width = max((len(name) for name, _ in shown), default=0) + 1
    for name, value in shown:
        typer.echo(f"{name + ':':<{width}} {value}")


def next_page(token: str) -> None:
    """Tell a person how to ask for the next page, on stderr so pipes see only rows."""
    if token:
        typer.echo(f"more: repeat with --page-token {token}", err=True)


def label(enum: Any, value: int) -> str:
    """An enum value as people and options write it: EXECUTION_STATUS_IN_PROGRESS is in_progress."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(_prefix(enum)).lower()


def choice(enum: Any, text: str, option: str) -> int:
    """The enum value `option` names (`in_progress`); a usage error for anything else."""
    prefix = _prefix(enum)
    names = [name.removeprefix(prefix).lower() for name in enum.keys()][1:]  # no UNSPECIFIED
    if text.lower() not in names:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(names)}", param_hint=option)
    number: int = enum.Value(prefix + text.upper())
    return number


def when(timestamp: Any) -> str:
    """A `Timestamp` as UTC to the second; '-' when unset."""
    if not (timestamp.seconds or timestamp.nanos):
        return "-"
    moment = timestamp.ToDatetime(tzinfo=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


def compact(message: Any) -> str:
    """A Struct or Value as one line of JSON, keys sorted so equal values print alike."""
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"), sort_keys=True)


def _prefix(enum: Any) -> str:
    """The prefix Buf style gives every value: ExecutionStatus -> EXECUTION_STATUS_."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
