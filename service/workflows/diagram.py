"""Renders a workflow document as a Mermaid flowchart, for editors and execution views.

It reads the document as untrusted JSON: malformed parts are skipped, never raised on, so
even a definition that fails validation can be drawn. Node ids are `s<index>` by step
position, because raw step ids such as `end` are Mermaid keywords.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from engine.steptypes import STEP_TYPES
from engine.titles import step_title

SHAPES: Final = {
    "input": ('(["', '"])'),
    "output": ('(["', '"])'),
    "condition": ('{"', '"}'),
    "loop": ('[["', '"]]'),
    "parallel": ('[["', '"]]'),
}
DEFAULT_SHAPE: Final = ('["', '"]')
CLASS_STYLES: Final = {
    "basic": "fill:#e8f1ff,stroke:#3b6fd8,color:#0b1f44",
    "advanced": "fill:#fff3dd,stroke:#d98b00,color:#3d2600",
    "custom": "fill:#f3e8ff,stroke:#8a4fd8,color:#2a0f4d",
}


def _escape(text: str) -> str:
    """Text safe inside a double-quoted Mermaid label: one line, entities for #, " and `."""
    one_line = " ".join(text.split())
    return one_line.replace("#", "#35;").replace('"', "#quot;").replace("`", "#96;")


def _label(step: Mapping[str, Any], index: int) -> str:
    title = step_title(step).strip() or f"step {index + 1}"
    step_type = step.get("type")
    return _escape(f"{title} ({step_type})" if isinstance(step_type, str) else title)


def _edges(step: Mapping[str, Any]) -> Iterator[tuple[Any, str | None]]:
    """(target step id, edge label) pairs, in document order; targets are unchecked."""
    config = step.get("config")
    config = config if isinstance(config, Mapping) else {}
    step_type = step.get("type")
    if step_type == "condition":
        conditions = config.get("conditions")
        for branch in conditions if isinstance(conditions, list) else []:
            if isinstance(branch, Mapping):
                text = branch.get("condition")
                yield branch.get("next"), text if isinstance(text, str) else "condition"
        if "default" in config:
            yield config.get("default"), "default"
    elif step_type == "loop":
        yield config.get("body"), "each item"
    elif step_type == "parallel":
        branches = config.get("branches")
        for branch_start in branches if isinstance(branches, list) else []:
            yield branch_start, "branch"
    if "next" in step:
        yield step.get("next"), None


def mermaid(definition: Mapping[str, Any]) -> str:
    """A `flowchart TD` of the document's steps, with one style class per step category."""
    raw_steps = definition.get("steps") if isinstance(definition, Mapping) else None
    steps = [
        (index, step)
        for index, step in enumerate(raw_steps if isinstance(raw_steps, list) else [])
        if isinstance(step, Mapping)
    ]
    node_by_id: dict[str, str] = {}
    for index, step in steps:
        step_id = step.get("id")
        if isinstance(step_id, str):
            node_by_id.setdefault(step_id, f"s{index}")

    lines = ["flowchart TD"]
    classes: dict[str, list[str]] = {category: [] for category in CLASS_STYLES}
    for index, step in steps:
        kind = step.get("type")
        kind = kind if isinstance(kind, str) else ""
        opening, closing = SHAPES.get(kind, DEFAULT_SHAPE)
        lines.append(f"    s{index}{opening}{_label(step, index)}{closing}")
        if kind in STEP_TYPES:
            classes[STEP_TYPES[kind].category].append(f"s{index}")
    for index, step in steps:
        for target, text in _edges(step):
            node = node_by_id.get(target) if isinstance(target, str) else None
            if node is None:
                continue
            arrow = "-->" if text is None else f'-->|"{_escape(text)}"|'
            lines.append(f"    s{index} {arrow} {node}")
    for category, style in CLASS_STYLES.items():
        lines.append(f"    classDef {category} {style}")
    for category, nodes in classes.items():
        if nodes:
            lines.append(f"    class {','.join(nodes)} {category}")
    return "\n".join(lines) + "\n"
