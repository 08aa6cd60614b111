"""The README stays true: its configuration table to the settings, its example to the rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from foundation.settings import setting_names
from service.workflows import documents
from service.workflows.validation import validate_workflow
from tiers import PLANS, Tier

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_table_lists_exactly_the_settings() -> None:
    documented = set(re.findall(r"^\| `(WFE_[A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    assert documented == setting_names()


def section(title: str) -> str:
    """The README's text under `## title`, up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_workflow() -> dict[str, Any]:
    """The Workflows section's YAML example, in the stored form Create takes."""
    example = re.search(r"```yaml\n(.*?)```", section("Workflows"), re.DOTALL)
    assert example is not None
    return documents.definition_of(documents.load_document(example.group(1)))


def test_workflow_example_is_a_valid_free_tier_definition_with_no_warning() -> None:
    report = validate_workflow(readme_workflow(), PLANS[Tier.FREE])
    assert (report.errors, report.warnings) == ([], [])
