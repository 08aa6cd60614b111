"""Condition expressions: parsing, errors with positions, rendering, simplification, evaluation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.expressions import (
    And,
    Compare,
    EvaluationError,
    Exists,
    Expression,
    ExpressionError,
    In,
    ListLiteral,
    Literal,
    Not,
    Operator,
    Or,
    Path,
    PathRef,
    evaluate,
    parse,
    parse_path,
    references,
    render,
    resolve,
    simplify,
)

OPERATORS: tuple[Operator, ...] = ("==", "!=", "<", "<=", ">", ">=")
CONTEXT: dict[str, Any] = {
    "input": {"amount": 250, "currency": "EUR", "tags": ["vip", "new"], "note": None},
    "enrich_data": {"success": True, "score": 0.75, "items": [{"id": 7}]},
    "check": {"passed": False},
}


def path(*segments: str | int) -> Path:
    return Path(PathRef(segments))


def test_the_seed_condition_parses_and_simplifies_to_its_path() -> None:
    node = parse("$.enrich_data.success == true")
    assert node == Compare("==", path("enrich_data", "success"), Literal(True))
    assert render(node) == "$.enrich_data.success == true"
    simpler = simplify(node)
    assert simpler is not None
    assert render(simpler) == "$.enrich_data.success"


def test_each_comparison_operator_parses() -> None:
    for op in OPERATORS:
        assert parse(f"$.a {op} 1") == Compare(op, path("a"), Literal(1))


def test_word_and_symbol_operators_give_the_same_tree() -> None:
    assert parse("$.a && $.b") == parse("$.a and $.b") == And(path("a"), path("b"))
    assert parse("$.a || $.b") == parse("$.a or $.b") == Or(path("a"), path("b"))
    assert parse("!$.a") == parse("not $.a") == Not(path("a"))


def test_keywords_are_lowercase_only() -> None:
    for text in ("$.a AND $.b", "True", "NOT $.a", "$.a In [1]", "Exists $.a"):
        with pytest.raises(ExpressionError):
            parse(text)


def test_precedence_is_not_then_comparison_then_and_then_or() -> None:
    node = parse("$.a || $.b && !$.c == $.d")
    assert node == Or(path("a"), And(path("b"), Compare("==", Not(path("c")), path("d"))))
    assert parse("($.a || $.b) && $.c") == And(Or(path("a"), path("b")), path("c"))
    assert parse("$.a && $.b && $.c") == And(And(path("a"), path("b")), path("c"))


def test_literals() -> None:
    assert parse("true") == Literal(True)
    assert parse("false") == Literal(False)
    assert parse("null") == Literal(None)
    assert parse("42") == Literal(42)
    assert parse("-42") == Literal(-42)
    assert parse("2.5e3") == Literal(2500.0)
    assert parse("1") != Literal(True)
    assert parse("1") != Literal(1.0)


def test_in_takes_a_list_or_a_path() -> None:
    items = ListLiteral((Literal(1), Literal("a"), Literal(-2.5), Literal(None)))
    assert parse('$.a in [1, "a", -2.5, null]') == In(path("a"), items)
    assert parse("$.a in []") == In(path("a"), ListLiteral(()))
    assert parse("'vip' in $.input.tags") == In(Literal("vip"), path("input", "tags"))
    with pytest.raises(ExpressionError):
        parse("$.a in 5")


def test_exists_with_and_without_parentheses() -> None:
    expected = Exists(PathRef(("a", "b")))
    assert parse("exists $.a.b") == parse("exists($.a.b)") == parse("exists ( $.a.b )") == expected
    assert parse("!exists $.a.b == true") == Compare("==", Not(expected), Literal(True))


def test_paths_with_indexes_quoted_keys_and_dashes() -> None:
    ref = parse_path("""$.step-1._x[0]["a b"]['c"d']""")
    assert ref.segments == ("step-1", "_x", 0, "a b", 'c"d')
    assert ref.root == "step-1"
    assert ref.render() == """$.step-1._x[0]["a b"]["c\\"d"]"""
    assert parse_path("$").segments == ()
    assert parse_path("$").root is None
    assert parse_path("$[0]").root is None
    assert parse_path("$.true").segments == ("true",)


def test_string_escapes() -> None:
    assert parse(r'"a\"b\\c\/d\n\t\r\b\f"') == Literal('a"b\\c/d\n\t\r\b\f')
    assert parse(r"'it\'s \u00e9'") == Literal("it's é")
    assert parse("'say \"hi\"'") == Literal('say "hi"')
    assert render(Literal('a"\\\n\x01é')) == '"a\\"\\\\\\n\\u0001é"'


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("$.a == ", 7, "unexpected end of input at position 7; expected a value"),
        ("$.a === 1", 6, "unexpected '=' at position 6; expected a value"),
        ("", 0, "unexpected end of input at position 0; expected a value"),
        ("$.a in 5", 7, "unexpected '5' at position 7; expected a path or '['"),
        ("$.a[", 4, "unexpected end of input at position 4; expected an index or a quoted key"),
        ("$.a[1.5]", 4, "index 1.5 at position 4 is not a whole number"),
        ("$.a == 'open", 7, "unterminated string at position 7"),
        (r'$.a == "\q"', 8, "bad escape \\q at position 8"),
        ("[1 2]", 3, "unexpected '2' at position 3; expected ',' or ']'"),
        (
            "$.a & $.b",
            4,
            "unexpected '&' at position 4; expected an operator, '[', '.' or end of input",
        ),
        ("1" * 400 + ".0e9", 0, "number out of range at position 0"),
    ],
)
def test_errors_point_at_the_offending_character(text: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.position == position
    assert caught.value.message == message == str(caught.value)


def test_parse_path_refuses_anything_but_one_path() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_path("$.a == 1")
    assert caught.value.position == 4
    with pytest.raises(ExpressionError):
        parse_path("true")


def test_deep_nesting_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError):
        parse("!" * 5000 + "true")
    with pytest.raises(ExpressionError):
        parse("(" * 5000 + "true" + ")" * 5000 + "&&")
    with pytest.raises(ExpressionError, match="levels of nesting at position 32"):
        parse("(" * 40 + "true" + ")" * 40)
    assert parse("(" * 32 + "true" + ")" * 32) == Literal(True)


def test_references_come_in_source_order_with_positions() -> None:
    text = "$.b.x == 1 && exists $.a || $.c in $.input.list"
    found = [(ref.render(), ref.position) for ref in references(parse(text))]
    assert found == [("$.b.x", 0), ("$.a", 21), ("$.c", 28), ("$.input.list", 35)]


def test_render_adds_only_needed_parentheses() -> None:
    node = And(Or(path("a"), path("b")), Not(Compare("==", path("c"), Literal("x"))))
    assert render(node) == '($.a || $.b) && !($.c == "x")'
    assert render(And(path("a"), And(path("b"), path("c")))) == "$.a && ($.b && $.c)"
    assert render(Compare("==", Compare("<", path("a"), Literal(1)), Literal(False))) == (
        "($.a < 1) == false"
    )


@pytest.mark.parametrize(
    ("text", "simpler"),
    [
        ("$.a == true", "$.a"),
        ("true == $.a", "$.a"),
        ("$.a != false", "$.a"),
        ("$.a == false", "!$.a"),
        ("$.a != true", "!$.a"),
        ("!!$.a", "$.a"),
        ("!($.a == 1)", "$.a != 1"),
        ("!($.a != 1)", "$.a == 1"),
        ("!($.a == false)", "$.a"),
        ("$.x && ($.a == true || !!exists $.b)", "$.x && ($.a || exists $.b)"),
    ],
)
def test_simplify_rules(text: str, simpler: str) -> None:
    result = simplify(parse(text))
    assert result is not None
    assert render(result) == simpler


def test_simplify_leaves_what_it_cannot_improve() -> None:
    for text in ("$.a", "$.a == 1", "!$.a", "5 == true", "!!5", "$.a && $.b"):
        assert simplify(parse(text)) is None


def test_evaluate_truth_table() -> None:
    cases = {
        "$.enrich_data.success == true": True,
        "$.check.passed": False,
        "$.input.amount > 100 && $.input.currency == 'EUR'": True,
        "$.input.amount >= 250.0 and $.input.amount <= 250": True,
        "$.input.amount < 1 || $.check.passed": False,
        "'vip' in $.input.tags": True,
        "$.input.currency in ['USD', 'GBP']": False,
        "'UR' in $.input.currency": True,
        "exists $.input.amount": True,
        "exists $.input.note": False,
        "exists($.missing.deeper)": False,
        "$.missing.deeper == null": True,
        "$.enrich_data.items[0].id == 7": True,
        "$.enrich_data.items[5].id == null": True,
        "$.enrich_data.score == 0.75": True,
        "1 == 1.0": True,
        "true == 1": False,
        "!$.missing": True,
        "not ($.check.passed or $.missing)": True,
        "'b' > 'a'": True,
    }
    for text, expected in cases.items():
        assert evaluate(parse(text), CONTEXT) is expected, text


def test_and_or_short_circuit() -> None:
    assert evaluate(parse("$.check.passed && 'a' < 1"), CONTEXT) is False
    assert evaluate(parse("$.enrich_data.success || 'a' < 1"), CONTEXT) is True


def test_values_of_other_expressions() -> None:
    assert evaluate(parse("$.input.tags"), CONTEXT) == ["vip", "new"]
    assert evaluate(parse("[1, 'a']"), CONTEXT) == [1, "a"]
    assert resolve(parse_path("$.input.tags[1]"), CONTEXT) == "new"
    assert resolve(parse_path("$.input.tags.x"), CONTEXT) is None
    assert resolve(parse_path("$[0]"), CONTEXT) is None


@pytest.mark.parametrize(
    "text",
    [
        '"a" < 1',
        "$.input.amount > '3'",
        "true < false",
        "$.missing >= 1",
        "1 in $.input.amount",
        "1 in $.input.currency",
        "1 in $.missing",
    ],
)
def test_evaluation_errors(text: str) -> None:
    with pytest.raises(EvaluationError):
        evaluate(parse(text), CONTEXT)


literals = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
).map(Literal)


def path_refs(keys: st.SearchStrategy[str], max_length: int) -> st.SearchStrategy[PathRef]:
    segments = st.lists(st.one_of(keys, st.integers(0, 3)), max_size=max_length)
    return segments.map(lambda found: PathRef(tuple(found)))


def expressions(refs: st.SearchStrategy[PathRef]) -> st.SearchStrategy[Expression]:
    lists = st.lists(literals, max_size=3).map(lambda items: ListLiteral(tuple(items)))
    paths = refs.map(Path)
    leaves = st.one_of(literals, lists, paths, refs.map(Exists))

    def extend(children: st.SearchStrategy[Expression]) -> st.SearchStrategy[Expression]:
        return st.one_of(
            children.map(Not),
            st.builds(And, children, children),
            st.builds(Or, children, children),
            st.builds(Compare, st.sampled_from(OPERATORS), children, children),
            st.builds(In, children, st.one_of(lists, paths)),
        )

    return st.recursive(leaves, extend, max_leaves=12)


small_keys = st.sampled_from(["a", "b", "c"])
any_expression = expressions(path_refs(st.text(max_size=6), max_length=3))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(small_keys, children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_raises_only_expression_error(text: str) -> None:
    try:
        parse(text)
    except ExpressionError as error:
        assert 0 <= error.position <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="$.[]()'\"\\!=<>&|, -0123456789abe truefalsnxi", max_size=30))
def test_parse_raises_only_expression_error_on_near_misses(text: str) -> None:
    try:
        parse(text)
    except ExpressionError as error:
        assert 0 <= error.position <= len(text)


@settings(max_examples=300, deadline=None)
@given(any_expression)
def test_render_then_parse_gives_the_same_tree(node: Expression) -> None:
    assert parse(render(node)) == node


@settings(max_examples=300, deadline=None)
@given(expressions(path_refs(small_keys, max_length=2)), st.dictionaries(small_keys, json_values))
def test_evaluate_raises_only_evaluation_error(node: Expression, context: dict[str, Any]) -> None:
    try:
        evaluate(node, context)
    except EvaluationError:
        pass


def outcome(node: Expression, context: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", evaluate(node, context)
    except EvaluationError:
        return "error", None


boolean_paths = expressions(small_keys.map(lambda key: PathRef((key,))))
simplifiable = st.one_of(
    boolean_paths,
    st.builds(Compare, st.sampled_from(["==", "!="]), boolean_paths, st.booleans().map(Literal)),
    st.builds(Compare, st.sampled_from(["==", "!="]), st.booleans().map(Literal), boolean_paths),
    boolean_paths.map(lambda node: Not(Not(node))),
    boolean_paths.map(lambda node: Not(Compare("!=", node, Literal(1)))),
)


@settings(max_examples=300, deadline=None)
@given(simplifiable, st.fixed_dictionaries({key: st.booleans() for key in "abc"}))
def test_simplify_keeps_the_value(node: Expression, context: dict[str, Any]) -> None:
    simpler = simplify(node)
    if simpler is None:
        return
    assert outcome(simpler, context) == outcome(node, context)
    assert len(render(simpler)) < len(render(node))
