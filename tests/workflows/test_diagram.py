"""The Mermaid rendering of workflow documents: exact output, escaping and robustness."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.steptypes import STEP_TYPES
from service.workflows.diagram import mermaid
from service.workflows.templates import catalog

CUSTOMER_ENRICHMENT = """\
flowchart TD
    s0(["Input (input)"])
    s1["Customer Lookup (tool)"]
    s2["Data Enrichment (tool)"]
    s3{"Check Enrichment Success (condition)"}
    s4(["Enriched Customer (output)"])
    s5(["Enrichment Failed (output)"])
    s0 --> s1
    s1 --> s2
    s2 --> s3
    s3 -->|"$.enrich_data.success == true"| s4
    s3 -->|"default"| s5
    classDef basic fill:#e8f1ff,stroke:#3b6fd8,color:#0b1f44
    classDef advanced fill:#fff3dd,stroke:#d98b00,color:#3d2600
    classDef custom fill:#f3e8ff,stroke:#8a4fd8,color:#2a0f4d
    class s0,s1,s2,s3,s4,s5 basic
"""


def test_customer_enrichment_renders_exactly() -> None:
    assert mermaid(catalog()["customer-enrichment"].workflow) == CUSTOMER_ENRICHMENT


def test_quotes_and_newlines_in_labels_are_escaped() -> None:
    diagram = mermaid(
        {
            "steps": [
                {"id": "a", "type": "input", "name": 'Say "hi"\nnow', "next": "b"},
                {
                    "id": "b",
                    "type": "condition",
                    "name": "#1 check",
                    "config": {
                        "conditions": [{"condition": '$.a.x == "y"', "next": "c"}],
                        "default": "c",
                    },
                },
                {"id": "c", "type": "output"},
            ]
        }
    )
    assert '    s0(["Say #quot;hi#quot; now (input)"])' in diagram
    assert '    s1{"#35;1 check (condition)"}' in diagram
    assert '    s1 -->|"$.a.x == #quot;y#quot;"| s2' in diagram
    assert '    s2(["C (output)"])' in diagram  # no name: a title from the id


def test_end_as_a_step_id_never_becomes_a_node_id() -> None:
    diagram = mermaid(
        {
            "steps": [
                {"id": "start", "type": "input", "next": "end"},
                {"id": "end", "type": "output", "name": "end"},
            ]
        }
    )
    assert diagram.splitlines()[1:4] == [
        '    s0(["Start (input)"])',
        '    s1(["end (output)"])',
        "    s0 --> s1",
    ]


def test_advanced_shapes_edges_and_classes() -> None:
    diagram = mermaid(
        {
            "steps": [
                {"id": "in", "type": "input", "next": "each"},
                {"id": "each", "type": "loop", "config": {"body": "work"}, "next": "fan"},
                {"id": "work", "type": "custom", "next": "each"},
                {"id": "fan", "type": "parallel", "config": {"branches": ["x", "y", "gone"]}},
                {"id": "x", "type": "wait"},
                {"id": "y", "type": "mystery", "next": "nowhere"},
            ]
        }
    )
    body = diagram.splitlines()
    assert '    s1[["Each (loop)"]]' in body
    assert '    s3[["Fan (parallel)"]]' in body
    assert '    s5["Y (mystery)"]' in body
    assert '    s1 -->|"each item"| s2' in body
    assert '    s3 -->|"branch"| s4' in body
    assert not [line for line in body if line.endswith(("gone", "nowhere"))]
    assert "    class s0 basic" in body
    assert "    class s1,s3,s4 advanced" in body
    assert "    class s2 custom" in body


def test_every_template_renders_one_node_per_step() -> None:
    for template in catalog().values():
        lines = mermaid(template.workflow).splitlines()
        nodes = [line for line in lines if line.startswith("    s") and "-->" not in line]
        assert len(nodes) == len(template.workflow["steps"]), template.id


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
IDS = st.sampled_from(["a", "b", "end"]) | JSON
CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "conditions": st.lists(
            st.fixed_dictionaries({}, optional={"condition": JSON, "next": IDS}), max_size=3
        )
        | JSON,
        "default": IDS,
        "body": IDS,
        "branches": st.lists(IDS, max_size=3) | JSON,
    },
)
STEP = st.fixed_dictionaries(
    {},
    optional={
        "id": IDS,
        "type": st.sampled_from(sorted(STEP_TYPES)) | JSON,
        "name": JSON,
        "next": IDS,
        "config": CONFIG | JSON,
    },
)


@given(
    st.dictionaries(st.text(max_size=8), JSON, max_size=4)
    | st.fixed_dictionaries({"steps": st.lists(STEP | JSON, max_size=6) | JSON})
    | st.lists(JSON, max_size=3)
)
def test_mermaid_never_raises_on_json_like_input(document: Any) -> None:
    diagram = mermaid(document)
    assert diagram.startswith("flowchart TD\n")
    assert all(line.startswith("    ") for line in diagram.splitlines()[1:])
