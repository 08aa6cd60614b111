"""The built-in template catalog: ready-made workflow documents, one YAML file each.

Templates ship as package data in `catalog/`, so they are read through importlib.resources
and work the same from a source tree or an installed wheel. Each names the lowest tier
that may use it; `Template.access` maps that to the plan's `TemplateAccess` level. A
tenant's own templates (`custom_templates`) take the same shape, with an `Origin`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final

import yaml

from tiers import TemplateAccess, Tier

CATALOG_PACKAGE: Final = "service.workflows"
CATALOG_DIR: Final = "catalog"
TEMPLATE_ID_PATTERN: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FIELDS: Final = ("id", "name", "description", "category", "tier", "workflow")

ACCESS_BY_TIER: Final = {
    Tier.FREE: TemplateAccess.BASIC,
    Tier.PROFESSIONAL: TemplateAccess.STANDARD,
    Tier.ENTERPRISE: TemplateAccess.ALL_AND_CUSTOM,
}
TIER_RANK: Final = {tier: rank for rank, tier in enumerate(Tier)}
CUSTOM_TIER: Final = next(
    tier for tier, access in ACCESS_BY_TIER.items() if access is TemplateAccess.ALL_AND_CUSTOM
)
"""The lowest tier whose plan admits custom templates, hence the tier each one needs."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a tenant's own template came from, and who saved it; the catalog's have none."""

    workflow_id: str
    version: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class Template:
    """One template: metadata plus the workflow document it creates."""

    id: str
    name: str
    description: str
    category: str
    tier: Tier
    workflow: dict[str, Any]
    origin: Origin | None = None

    @property
    def access(self) -> TemplateAccess:
        """The plan template level needed to use this template."""
        return ACCESS_BY_TIER[self.tier]

    @property
    def custom(self) -> bool:
        """A tenant's own template rather than one of the catalog's."""
        return self.origin is not None


def parse_template(file_name: str, text: str) -> Template:
    """Reads one catalog file; a malformed one raises ValueError naming `file_name`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{file_name}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{file_name}: a template must be a mapping")
    missing = [field for field in FIELDS if field not in data]
    if missing:
        raise ValueError(f"{file_name}: missing {', '.join(missing)}")
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise ValueError(f"{file_name}: unknown fields {', '.join(unknown)}")
    for field in ("id", "name", "description", "category"):
        if not isinstance(data[field], str) or not data[field].strip():
            raise ValueError(f"{file_name}: {field} must be a non-empty string")
    stem = file_name.rsplit("/", 1)[-1].removesuffix(".yaml")
    if not TEMPLATE_ID_PATTERN.match(data["id"]) or data["id"] != stem:
        raise ValueError(f"{file_name}: id must be kebab-case and equal the file name")
    try:
        tier = Tier(data["tier"])
    except ValueError as error:
        raise ValueError(f"{file_name}: unknown tier {data['tier']!r}") from error
    workflow = data["workflow"]
    if not isinstance(workflow, dict) or not isinstance(workflow.get("steps"), list):
        raise ValueError(f"{file_name}: workflow must be a mapping with a steps list")
    return Template(
        id=data["id"],
        name=data["name"],
        description=data["description"].strip(),
        category=data["category"],
        tier=tier,
        workflow=workflow,
    )


@functools.cache
def catalog() -> dict[str, Template]:
    """Every built-in template by id, ordered by tier (free first), then id.

    Loaded once per process; callers must not mutate the returned templates' workflows.
    """
    directory = resources.files(CATALOG_PACKAGE).joinpath(CATALOG_DIR)
    templates = [
        parse_template(f"{CATALOG_DIR}/{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in directory.iterdir()
        if entry.name.endswith(".yaml") and entry.is_file()
    ]
    templates.sort(key=lambda template: (TIER_RANK[template.tier], template.id))
    return {template.id: template for template in templates}
