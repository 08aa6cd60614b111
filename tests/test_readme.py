"""The README's configuration table stays true to the settings."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_table_lists_exactly_the_settings() -> None:
    documented = set(re.findall(r"^\| `(WFE_[A-Z_]+)` \|", README.read_text(), re.MULTILINE))
    expected = {f"WFE_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
