"""Condition expressions and path references, parsed once by a grammar into a typed AST.

Tenants write these, so they are never `eval`-ed: validation, rendering, simplification and
evaluation all work on the frozen dataclasses below, and every bad input is an `ExpressionError`.
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

GRAMMAR: Final = r"""
?expression: or_expr
path_only: path

?or_expr: and_expr
        | or_expr OR and_expr -> or_
?and_expr: test
         | and_expr AND test -> and_
?test: unary
     | unary COMP_OP unary -> compare
     | unary IN in_target -> in_
?in_target: list | path
?unary: atom
      | NOT unary -> not_
?atom: path
     | literal
     | list
     | EXISTS path -> exists
     | EXISTS "(" path ")" -> exists
     | "(" or_expr ")"
literal: MINUS? NUMBER | STRING | TRUE | FALSE | NULL
list: "[" [literal ("," literal)*] "]"
path: "$" ("." NAME | "[" NUMBER "]" | "[" STRING "]")*

OR: "||" | "or"
AND: "&&" | "and"
NOT: "!" | "not"
IN: "in"
EXISTS: "exists"
COMP_OP: /==|!=|<=|>=|<|>/
TRUE: "true"
FALSE: "false"
NULL: "null"
NUMBER: /[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/
STRING: /"(?:[^"\\]|\\[\s\S])*"/ | /'(?:[^'\\]|\\[\s\S])*'/
NAME: /[A-Za-z_][A-Za-z0-9_-]*/
MINUS: "-"

%import common.WS
%ignore WS
"""

_PARSER: Final = Lark(
    GRAMMAR,
    parser="lalr",
    start=["expression", "path_only"],
    propagate_positions=True,
    maybe_placeholders=False,
)
# Tenants write these, so work per expression is bounded before lark sees the text: the
# length first (which bounds everything else), then depth, list size and path length.
MAX_LENGTH: Final = 4096
MAX_DEPTH: Final = 32
MAX_LIST_ITEMS: Final = 1000
MAX_PATH_SEGMENTS: Final = 32
_DESCRIPTIONS: Final = {
    **dict.fromkeys("NUMBER STRING TRUE FALSE NULL MINUS NOT EXISTS".split(), "a value"),
    **dict.fromkeys("COMP_OP IN AND OR".split(), "an operator"),
    **{"DOLLAR": "a path", "NAME": "a name", "LPAR": "'('", "LSQB": "'['", "DOT": "'.'"},
    **{"COMMA": "','", "RSQB": "']'", "RPAR": "')'", "$END": "end of input"},
}
_ORDER: Final = tuple(dict.fromkeys(_DESCRIPTIONS.values()))
_ESCAPES: Final = dict(zip("\"'\\/bfnrt", "\"'\\/\b\f\n\r\t", strict=True))
_QUOTES: Final = {char: f"\\{code}" for code, char in _ESCAPES.items() if code not in "'/"}
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_NAME_START: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST: Final = _NAME_START | frozenset("0123456789-")


class ExpressionError(ValueError):
    """Text that is not an expression; `position` is the 0-based offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class EvaluationError(ValueError):
    """An expression that has no value in a context, e.g. ordering a string against a number."""


Value: TypeAlias = bool | int | float | str | None
Operator: TypeAlias = typing.Literal["==", "!=", "<", "<=", ">", ">="]
_OPERATORS: Final[dict[str, Operator]] = {op: op for op in typing.get_args(Operator)}
_ORDERINGS: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True, slots=True)
class PathRef:
    """`$` and its segments: names and quoted keys as `str`, list indexes as `int`."""

    segments: tuple[str | int, ...]
    position: int = field(default=0, compare=False)

    @property
    def root(self) -> str | None:
        """The step (or `input`) the path reads from, if it names one."""
        return self.segments[0] if self.segments and isinstance(self.segments[0], str) else None

    def render(self) -> str:
        parts = ["$"]
        for segment in self.segments:
            if isinstance(segment, int):
                parts.append(f"[{segment}]")
            elif segment[:1] in _NAME_START and set(segment) <= _NAME_REST:
                parts.append(f".{segment}")
            else:
                parts.append(f"[{_quote(segment)}]")
        return "".join(parts)


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    """A constant; equal only to a constant of the same type, so `true` is not `1`."""

    value: Value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Literal):
            return NotImplemented
        return type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True, slots=True)
class ListLiteral:
    items: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Path:
    ref: PathRef


@dataclass(frozen=True, slots=True)
class Exists:
    """True when the path resolves to something other than null."""

    ref: PathRef


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expression


@dataclass(frozen=True, slots=True)
class And:
    left: Expression
    right: Expression


@dataclass(frozen=True, slots=True)
class Or:
    left: Expression
    right: Expression


@dataclass(frozen=True, slots=True)
class Compare:
    op: Operator
    left: Expression
    right: Expression


@dataclass(frozen=True, slots=True)
class In:
    item: Expression
    container: ListLiteral | Path


Expression: TypeAlias = Literal | ListLiteral | Path | Exists | Not | And | Or | Compare | In
_PRECEDENCE: Final[dict[type, int]] = {Or: 1, And: 2, Compare: 3, In: 3, Not: 4}


def parse(text: str) -> Expression:
    """The tree of a condition; raises `ExpressionError`, and nothing else, for any bad text."""
    return _expression(_parse(text, "expression"), 0)


def parse_path(text: str) -> PathRef:
    """A text that must be exactly one path, such as a step's input mapping."""
    match _parse(text, "path_only").children:
        case [Tree() as path]:
            return _path(path)
    raise ExpressionError(f"{text!r} is not a path", 0)


def _parse(text: str, start: str) -> Tree[Token]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"longer than {MAX_LENGTH} characters ({len(text)}) at position {MAX_LENGTH}",
            MAX_LENGTH,
        )
    _check_nesting(text)
    try:
        return _PARSER.parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None


def _check_nesting(text: str) -> None:
    """Refuse brackets nested deeper than `MAX_DEPTH`, counting outside quoted strings."""
    depth, quote, escaped = 0, "", False
    for position, char in enumerate(text):
        if escaped:
            escaped = False
        elif quote:
            escaped = char == "\\"
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionError(
                    f"more than {MAX_DEPTH} levels of nesting at position {position}", position
                )
        elif char in ")]":
            depth -= 1


def _syntax_error(exc: UnexpectedInput, text: str) -> ExpressionError:
    position = exc.pos_in_stream
    if position is None or position < 0:
        position = len(text)
    found = "input"
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        position, found = len(text), "end of input"
    elif isinstance(exc, UnexpectedToken):
        found = repr(exc.token[:20]) + ("..." if len(exc.token) > 20 else "")
    elif isinstance(exc, UnexpectedCharacters):
        if exc.char in "\"'":
            return ExpressionError(f"unterminated string at position {position}", position)
        found = repr(exc.char)
    parser = getattr(exc, "interactive_parser", None)
    expected = _describe(parser.accepts()) if parser is not None else ""
    message = f"unexpected {found} at position {position}"
    return ExpressionError(f"{message}; expected {expected}" if expected else message, position)


def _describe(expected: set[str]) -> str:
    if not expected:
        return ""
    if expected == {"NUMBER", "STRING"}:
        return "an index or a quoted key"
    names = {_DESCRIPTIONS.get(name, name) for name in expected}
    if "a value" in names:
        names -= {"a path", "'('", "'['"}
    ordered = sorted(names, key=lambda name: _ORDER.index(name) if name in _ORDER else len(_ORDER))
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} or {ordered[-1]}"


def _expression(tree: Tree[Token], depth: int) -> Expression:
    if depth > MAX_DEPTH:
        at = tree.meta.start_pos
        raise ExpressionError(f"more than {MAX_DEPTH} levels of nesting at position {at}", at)
    below = depth + 1
    match tree.data, tree.children:
        case "or_", [Tree() as left, _, Tree() as right]:
            return Or(_expression(left, below), _expression(right, below))
        case "and_", [Tree() as left, _, Tree() as right]:
            return And(_expression(left, below), _expression(right, below))
        case "compare", [Tree() as left, op, Tree() as right]:
            return Compare(_OPERATORS[str(op)], _expression(left, below), _expression(right, below))
        case "in_", [Tree() as item, _, Tree() as container]:
            inside = Path(_path(container)) if container.data == "path" else _list(container)
            return In(_expression(item, below), inside)
        case "not_", [_, Tree() as operand]:
            return Not(_expression(operand, below))
        case "exists", [_, Tree() as path]:
            return Exists(_path(path))
        case "path", _:
            return Path(_path(tree))
        case "literal", _:
            return _literal(tree)
    return _list(tree)


def _list(tree: Tree[Token]) -> ListLiteral:
    items = [item for item in tree.children if isinstance(item, Tree)]
    if len(items) > MAX_LIST_ITEMS:
        at = items[MAX_LIST_ITEMS].meta.start_pos
        raise ExpressionError(
            f"a list holds at most {MAX_LIST_ITEMS} items; item {MAX_LIST_ITEMS + 1} "
            f"is at position {at}",
            at,
        )
    return ListLiteral(tuple(_literal(item) for item in items))


def _path(tree: Tree[Token]) -> PathRef:
    tokens = (child for child in tree.children if isinstance(child, Token))
    segments: list[str | int] = []
    for token in tokens:
        if len(segments) == MAX_PATH_SEGMENTS:
            raise ExpressionError(
                f"a path has at most {MAX_PATH_SEGMENTS} segments; more at position {_at(token)}",
                _at(token),
            )
        if token.type == "NUMBER":
            index = _number(token)
            if not isinstance(index, int):
                raise ExpressionError(
                    f"index {token} at position {_at(token)} is not a whole number", _at(token)
                )
            segments.append(index)
        else:
            segments.append(str(token) if token.type == "NAME" else _unquote(token))
    return PathRef(tuple(segments), tree.meta.start_pos)


def _literal(tree: Tree[Token]) -> Literal:
    tokens = [child for child in tree.children if isinstance(child, Token)]
    token = tokens[-1]
    if token.type == "NUMBER":
        number = _number(token)
        return Literal(-number if len(tokens) == 2 else number)
    if token.type == "STRING":
        return Literal(_unquote(token))
    return Literal({"TRUE": True, "FALSE": False}.get(token.type))


def _number(token: Token) -> int | float:
    try:
        number = int(token) if token.isdigit() else float(token)
    except ValueError:
        number = float("inf")
    if number in (float("inf"), float("-inf")):
        raise ExpressionError(f"number out of range at position {_at(token)}", _at(token))
    return number


def _unquote(token: Token) -> str:
    body, start, out, index = token[1:-1], _at(token) + 1, [], 0
    while index < len(body):
        char, index = body[index], index + 1
        if char == "\\":
            code, digits, index = body[index], body[index + 1 : index + 5], index + 1
            if code == "u" and len(digits) == 4 and set(digits) <= _HEX:
                char, index = chr(int(digits, 16)), index + 4
            elif code in _ESCAPES:
                char = _ESCAPES[code]
            else:
                at = start + index - 2
                raise ExpressionError(f"bad escape \\{code} at position {at}", at)
        out.append(char)
    return "".join(out)


def _at(token: Token) -> int:
    return token.start_pos or 0


def _quote(text: str) -> str:
    def escape(char: str) -> str:
        if char in _QUOTES:
            return _QUOTES[char]
        return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char

    return '"' + "".join(map(escape, text)) + '"'


def _operand(node: Expression, least: int) -> str:
    text = render(node)
    return f"({text})" if _PRECEDENCE.get(type(node), 5) < least else text


def render(node: Expression) -> str:
    """The canonical text of `node`, with only the parentheses precedence needs."""
    match node:
        case Literal(value):
            if value is None or isinstance(value, bool):
                return {None: "null", True: "true", False: "false"}[value]
            return _quote(value) if isinstance(value, str) else repr(value)
        case ListLiteral(items):
            return f"[{', '.join(render(item) for item in items)}]"
        case Path(ref):
            return ref.render()
        case Exists(ref):
            return f"exists {ref.render()}"
        case Not(operand):
            return f"!{_operand(operand, 4)}"
        case And(left, right):
            return f"{_operand(left, 2)} && {_operand(right, 3)}"
        case Or(left, right):
            return f"{_operand(left, 1)} || {_operand(right, 2)}"
        case Compare(op, left, right):
            return f"{_operand(left, 4)} {op} {_operand(right, 4)}"
        case In(item, container):
            return f"{_operand(item, 4)} in {render(container)}"


def references(node: Expression) -> list[PathRef]:
    """Every path in `node`, in the order they appear in its text."""
    return list(_references(node))


def _references(node: Expression) -> Iterator[PathRef]:
    match node:
        case Path(ref) | Exists(ref):
            yield ref
        case Not(operand):
            yield from _references(operand)
        case And(left, right) | Or(left, right) | Compare(_, left, right):
            yield from _references(left)
            yield from _references(right)
        case In(item, container):
            yield from _references(item)
            yield from _references(container)


def simplify(node: Expression) -> Expression | None:
    """A simpler equivalent of `node`, or None when there is none.

    Comparisons with `true`/`false` and double negations are dropped only around boolean
    operands (paths count as boolean), so the result has the same value as the original.
    """
    simpler = _simplify(node)
    return None if simpler == node else simpler


def _simplify(node: Expression) -> Expression:
    match node:
        case Not(operand):
            node = Not(_simplify(operand))
        case And(left, right):
            node = And(_simplify(left), _simplify(right))
        case Or(left, right):
            node = Or(_simplify(left), _simplify(right))
        case Compare(op, left, right):
            node = Compare(op, _simplify(left), _simplify(right))
        case In(item, container):
            node = In(_simplify(item), container)
    while (rewritten := _rewrite(node)) is not None:
        node = rewritten
    return node


def _rewrite(node: Expression) -> Expression | None:
    match node:
        case Compare("==" | "!=" as op, left, right):
            for flag, other in ((right, left), (left, right)):
                if isinstance(flag, Literal) and isinstance(flag.value, bool) and _boolean(other):
                    return other if (op == "==") == flag.value else Not(other)
        case Not(Not(operand)) if _boolean(operand):
            return operand
        case Not(Compare("==" | "!=" as op, left, right)):
            return Compare("!=" if op == "==" else "==", left, right)
    return None


def _boolean(node: Expression) -> bool:
    if isinstance(node, Literal):
        return isinstance(node.value, bool)
    return not isinstance(node, ListLiteral)


def evaluate(node: Expression, context: Mapping[str, Any]) -> Any:
    """The value of `node` when paths read from `context`, a mapping of JSON-like values."""
    try:
        return _evaluate(node, context)
    except RecursionError:
        raise EvaluationError("values nest too deeply to compare") from None


def _evaluate(node: Expression, context: Mapping[str, Any]) -> Any:
    match node:
        case Literal(value):
            return value
        case ListLiteral(items):
            return [item.value for item in items]
        case Path(ref):
            return resolve(ref, context)
        case Exists(ref):
            return resolve(ref, context) is not None
        case Not(operand):
            return not _evaluate(operand, context)
        case And(left, right):
            return bool(_evaluate(left, context)) and bool(_evaluate(right, context))
        case Or(left, right):
            return bool(_evaluate(left, context)) or bool(_evaluate(right, context))
        case Compare(op, left, right):
            return _compare(op, _evaluate(left, context), _evaluate(right, context))
        case In(item, container):
            return _contains(_evaluate(container, context), _evaluate(item, context))


def resolve(path: PathRef, context: Mapping[str, Any]) -> Any:
    """The value `path` names in `context`, or None when any part of it is missing."""
    value: Any = context
    for segment in path.segments:
        if isinstance(segment, str) and isinstance(value, Mapping):
            value = value.get(segment)
        elif (
            isinstance(segment, int)
            and isinstance(value, list | tuple)
            and 0 <= segment < len(value)
        ):
            value = value[segment]
        else:
            return None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_equal(left[key], right[key]) for key in left)
    return type(left) is type(right) and bool(left == right)


def _compare(op: Operator, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        return _equal(left, right) == (op == "==")
    if not (_is_number(left) and _is_number(right)) and not (
        isinstance(left, str) and isinstance(right, str)
    ):
        raise EvaluationError(
            f"cannot order {type(left).__name__} against {type(right).__name__} with {op}"
        )
    return bool(_ORDERINGS[op](left, right))


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, list | tuple):
        return any(_equal(item, element) for element in container)
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError(f"cannot look for {type(item).__name__} in a string")
        return item in container
    raise EvaluationError(f"'in' needs a list or a string, not {type(container).__name__}")
