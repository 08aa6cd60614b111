"""The comments of the `.proto` files, the API's documentation, for the OpenAPI document.

The generated `_pb2` modules carry no source info, so the comments are read from the `.proto`
file beside each module when it is there (a checkout, or a wheel that ships the protos);
without it the document is the same, only without descriptions. The reader knows the protos'
style, not all of proto3: a run of `//` lines directly above a `service`, `rpc`, `message`,
`enum`, `oneof`, field or enum value documents it, keyed by its full name
(`wfe.v1.Workflow.input_schema`). A blank line ends a run; trailing comments are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Final

PACKAGE: Final = re.compile(r"^package\s+([\w.]+)\s*;")
BLOCK: Final = re.compile(r"^(service|message|enum|oneof)\s+(\w+)\s*\{")
RPC: Final = re.compile(r"^rpc\s+(\w+)\s*\(")
FIELD: Final = re.compile(
    r"^(?:repeated\s+|optional\s+)?(?:map\s*<[^>]*>|[\w.]+)\s+(\w+)\s*=\s*\d+\s*[;\[]"
)
ENUM_VALUE: Final = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*-?\d+\s*[;\[]")
STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')


def proto_comments(modules: Iterable[ModuleType]) -> dict[str, str]:
    """Every documented declaration of the `.proto` files of `modules`, by full name."""
    found: dict[str, str] = {}
    for module in modules:
        source = Path(module.__file__ or "").parent / Path(module.DESCRIPTOR.name).name
        if source.is_file():
            found.update(comments_of(source.read_text(encoding="utf-8")))
    return found


def comments_of(text: str) -> dict[str, str]:
    """The documented declarations of one `.proto` file's text."""
    found: dict[str, str] = {}
    package = ""
    scopes: list[tuple[str, str]] = []  # (kind, full name) of each open brace
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("//"):
            pending.append(line[2:].removeprefix(" ").rstrip())
            continue
        if not line:
            pending = []
            continue
        code = STRING.sub('""', line.split("//", 1)[0])
        kind, name = scopes[-1] if scopes else ("file", package)
        key, opened = _declared(code, kind, name, package)
        if key is not None and pending:
            found[key] = _joined(pending)
        declared_package = PACKAGE.match(code)
        if declared_package:
            package = declared_package.group(1)
        pending = []
        for character in code:
            if character == "{":
                scopes.append(opened or ("other", name))
                opened = None
            elif character == "}" and scopes:
                scopes.pop()
    return found


def _declared(
    code: str, kind: str, scope: str, package: str
) -> tuple[str | None, tuple[str, str] | None]:
    """What the line declares (its full name) and the scope its first brace opens."""
    prefix = scope or package
    block = BLOCK.match(code)
    if block:
        what, name = block.groups()
        full = f"{prefix}.{name}" if prefix else name
        return full, (what, scope if what == "oneof" else full)
    rpc = RPC.match(code)
    if rpc and kind == "service":
        return f"{scope}.{rpc.group(1)}", ("rpc", scope)
    if kind in ("message", "oneof"):
        field = FIELD.match(code)
        if field:
            return f"{scope}.{field.group(1)}", None
    if kind == "enum":
        value = ENUM_VALUE.match(code)
        if value:
            return f"{scope}.{value.group(1)}", None
    return None, None


def _joined(lines: list[str]) -> str:
    """Comment lines as text: lines joined by spaces, an empty `//` line a paragraph break."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(words) for words in paragraphs if words)
