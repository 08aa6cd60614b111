"""Workflow definitions: steps, validation, versions, templates."""
