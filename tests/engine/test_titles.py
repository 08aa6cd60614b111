"""A step without a `name` shows a title made from its id, in progress and in diagrams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import progress
from engine.titles import step_title, title_of
from service.workflows.diagram import mermaid


@pytest.mark.parametrize(
    ("step_id", "title"),
    [
        ("send_email", "Send email"),
        ("send-email", "Send email"),
        ("sendEmail", "Send email"),
        ("callHTTPService", "Call HTTP service"),
        ("step2", "Step 2"),
        ("check_order_v2", "Check order v2"),
        ("input", "Input"),
        ("__", "__"),
    ],
)
def test_an_id_reads_as_a_sentence_case_title(step_id: str, title: str) -> None:
    assert title_of(step_id) == title


@given(st.text(max_size=60))
def test_any_id_gets_a_title_without_losing_its_letters(step_id: str) -> None:
    title = title_of(step_id)
    assert title or not step_id
    wanted = [c.lower() for c in step_id if c.isascii() and c.isalnum()]
    assert [c.lower() for c in title if c.isascii() and c.isalnum()] == wanted or title == step_id


def test_a_named_step_keeps_its_name() -> None:
    assert step_title({"id": "send_email", "name": "E-mail the customer"}) == "E-mail the customer"
    assert step_title({"id": "send_email", "name": "  "}) == "Send email"


def test_progress_and_diagram_show_the_title_of_an_unnamed_step() -> None:
    definition = {
        "steps": [
            {"id": "collect_input", "type": "input", "next": "notifyUser"},
            {"id": "notifyUser", "type": "output", "config": {"values": {}}},
        ]
    }
    entries = progress.initial(definition)["step_list"]
    assert [entry["name"] for entry in entries] == ["Collect input", "Notify user"]
    assert "Notify user (output)" in mermaid(definition)
