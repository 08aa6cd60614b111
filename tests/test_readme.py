"""The README's configuration table stays true to the settings."""

from __future__ import annotations

import re
from pathlib import Path

from foundation.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_table_lists_exactly_the_settings() -> None:
    documented = set(re.findall(r"^\| `(WFE_[A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    expected = {f"WFE_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_workflow_example_is_a_valid_free_tier_definition() -> None:
    from service.workflows import documents
    from service.workflows.validation import validate_workflow
    from tiers import PLANS, Tier

    example = re.search(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    assert example is not None
    definition = documents.definition_of(documents.load_document(example.group(1)))
    report = validate_workflow(definition, PLANS[Tier.FREE])
    assert (report.errors, report.warnings) == ([], [])
