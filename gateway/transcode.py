"""JSON to request messages and response messages to JSON, as `google.protobuf.json_format` does.

JSON uses the proto field names (`input_schema`, `debug_mode`), as seed 004 writes them, and
prints every field that has no presence, so an empty list or a false flag is there to read.
A request is built from three places, in this order: the body (the whole request for `*`,
or the one field the route names), the path's variables, then the query string (proto field
names, dotted for nested fields, repeated for lists: `?statuses=A&statuses=B`), each value
converted as json_format converts a JSON string. A query parameter may only name a field the
body and path leave: with a body of `*`, there is none.

Nothing is ignored: an unknown field or parameter, or a value of the wrong type, is a 400
`invalid_input` with one field violation naming where, in the body as sent
(`steps[2].retry.max_attempts`, as the server names a definition's fields) or the parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.errors import GatewayError, invalid_input
from gateway.routes import Route

JSON_OPTIONS: Final[Mapping[str, bool]] = {
    "preserving_proto_field_name": True,
    "always_print_fields_with_no_presence": True,
}
BAD_BODY: Final = "the request body is not valid JSON"
BAD_REQUEST: Final = "the request does not fit the method's request message"
WELL_KNOWN: Final[Mapping[str, str]] = {
    "google.protobuf.Struct": "a JSON object",
    "google.protobuf.ListValue": "a JSON list",
    "google.protobuf.Value": "a JSON value",
    "google.protobuf.Timestamp": 'an RFC 3339 time such as "2026-01-31T12:00:00Z"',
    "google.protobuf.Duration": 'a duration in seconds such as "1.5s"',
    "google.protobuf.FieldMask": 'field names separated by commas, e.g. "name,steps"',
}
SCALARS: Final[Mapping[int, str]] = {
    FieldDescriptor.CPPTYPE_INT32: "a 32-bit integer",
    FieldDescriptor.CPPTYPE_INT64: "an integer (a number or a string of digits)",
    FieldDescriptor.CPPTYPE_UINT32: "a non-negative 32-bit integer",
    FieldDescriptor.CPPTYPE_UINT64: "a non-negative integer",
    FieldDescriptor.CPPTYPE_DOUBLE: "a number",
    FieldDescriptor.CPPTYPE_FLOAT: "a number",
    FieldDescriptor.CPPTYPE_BOOL: "true or false",
    FieldDescriptor.CPPTYPE_STRING: "a string",
}
CAMEL: Final = re.compile(r"(?<!^)(?=[A-Z])")


def message_json(message: Message) -> dict[str, Any]:
    """`message` as JSON, with proto field names and every field without presence."""
    converted: dict[str, Any] = json_format.MessageToDict(message, **JSON_OPTIONS)
    return converted


def response_json(route: Route, response: Message) -> dict[str, Any]:
    """What the HTTP answer holds: the response, or its `response_body` field."""
    if route.response_body:
        return message_json(getattr(response, route.response_body))
    return message_json(response)


def parse_body(raw: bytes) -> Any:
    """The request body as JSON (empty: an empty object)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise invalid_input(BAD_BODY, "body", "the body is not UTF-8") from error
    except RecursionError as error:
        raise invalid_input(BAD_BODY, "body", "nested too deeply") from error
    except ValueError as error:
        raise invalid_input(BAD_BODY, "body", str(error)) from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def request_message(
    route: Route,
    variables: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    body: Any,
) -> Message:
    """The request `route`'s RPC takes, from the body, the path's variables and the query."""
    request: Message = message_factory.GetMessageClass(route.request_type)()
    if route.body:
        _merge(body, request if route.body == "*" else getattr(request, route.body))
    for name, value in variables.items():
        _set_text(request, name, [value], "path")
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        if not _settable_by_query(route, name):
            raise invalid_input(
                f"unknown query parameter {name!r}", name, "not a query parameter of this route"
            )
        _set_text(request, name, values, "query")
    return request


def _settable_by_query(route: Route, name: str) -> bool:
    if route.body == "*" or name in route.variables:
        return False
    return not (route.body and (name == route.body or name.startswith(route.body + ".")))


def _merge(value: Any, target: Message) -> None:
    """Fills `target` from the body; a violation names its place in the body as sent."""
    problem = problem_in(value, target.DESCRIPTOR, "")
    if problem is not None:
        field, description = problem
        raise invalid_input(f"{field or 'body'}: {description}", field or "body", description)
    try:
        json_format.ParseDict(value, target, ignore_unknown_fields=False)
    except (json_format.ParseError, RecursionError) as error:  # a rule the walk does not know
        raise invalid_input(BAD_REQUEST, "body", _last_clause(str(error))) from error


def _last_clause(text: str) -> str:
    """json_format's innermost complaint, without the chain of "Failed to parse" before it."""
    return text.rsplit("field: ", 1)[-1].split(" at ", 1)[0].strip().rstrip(".")


def problem_in(value: Any, message: Descriptor, path: str) -> tuple[str, str] | None:
    """The first place in `value` json_format would refuse for `message`, and why.

    json_format names only the chain of fields, without list positions; this walk names the
    exact place, so an editor can point at it.
    """
    if message.full_name in WELL_KNOWN:
        return _well_known_problem(value, message, path)
    if not isinstance(value, dict):
        return path, "expected an object"
    fields = {field.name: field for field in message.fields}
    fields.update((field.json_name, field) for field in message.fields)
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        field = fields.get(key)
        if field is None:
            return where, "unknown field"
        if item is None:
            continue  # null: the field's default
        problem = _field_problem(field, item, where)
        if problem is not None:
            return problem
    return None


def _field_problem(field: FieldDescriptor, value: Any, where: str) -> tuple[str, str] | None:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        if not isinstance(value, dict):
            return where, "expected an object"
        value_field = entry.fields_by_name["value"]
        for key, item in value.items():
            problem = _single_problem(value_field, item, f"{where}.{key}")
            if problem is not None:
                return problem
        return None
    if field.is_repeated:
        if not isinstance(value, list):
            return where, "expected a list"
        for index, item in enumerate(value):
            problem = _single_problem(field, item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    return _single_problem(field, value, where)


def _single_problem(field: FieldDescriptor, value: Any, where: str) -> tuple[str, str] | None:
    if field.message_type is not None:
        return problem_in(value, field.message_type, where)
    probe = message_factory.GetMessageClass(field.containing_type)()
    try:
        json_format.ParseDict({field.name: [value] if field.is_repeated else value}, probe)
    except json_format.ParseError:
        return where, f"expected {_expected(field)}"
    return None


def _well_known_problem(value: Any, message: Descriptor, path: str) -> tuple[str, str] | None:
    try:
        json_format.ParseDict(value, message_factory.GetMessageClass(message)())
    except json_format.ParseError:
        return path, f"expected {WELL_KNOWN[message.full_name]}"
    return None


def _expected(field: FieldDescriptor) -> str:
    if field.enum_type is not None:
        names = ", ".join(v.name for v in field.enum_type.values if v.number != 0)
        return f"one of {names}"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return "base64 text"
    return SCALARS.get(field.cpp_type, "a value of the field's type")


def _set_text(request: Message, path: str, values: list[str], where: str) -> None:
    """Sets the field at dotted `path` from text, as a JSON string of that field converts."""
    names = path.split(".")
    message = request
    for name in names[:-1]:
        field = message.DESCRIPTOR.fields_by_name.get(name)
        if field is None or field.message_type is None or field.is_repeated:
            raise _unknown(path, where)
        message = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name.get(names[-1])
    if field is None or (field.message_type is not None and not _textual(field)):
        raise _unknown(path, where)
    if len(values) > 1 and not field.is_repeated:
        raise invalid_input(f"{path} is given {len(values)} times", path, "give it once")
    if field.message_type is not None and field.message_type.full_name == (
        "google.protobuf.FieldMask"
    ):
        mask = getattr(message, field.name)
        mask.paths.extend(_snake(part) for value in values for part in value.split(",") if part)
        return
    converted = [_from_text(field, value) for value in values]
    try:
        json_format.ParseDict(
            {field.name: converted if field.is_repeated else converted[0]}, message
        )
    except json_format.ParseError as error:
        description = f"expected {_expected(field)}"
        if field.message_type is not None:
            description = f"expected {WELL_KNOWN.get(field.message_type.full_name, 'text')}"
        raise invalid_input(f"{path}: {description}", path, description) from error


def _textual(field: FieldDescriptor) -> bool:
    """Whether a message field takes text in a path or query: the well-known scalar-like ones."""
    return field.message_type.full_name in (
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
    )


def _from_text(field: FieldDescriptor, value: str) -> Any:
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        lowered = value.lower()
        return {"true": True, "1": True, "false": False, "0": False}.get(lowered, value)
    return value


def _snake(name: str) -> str:
    return CAMEL.sub("_", name).lower() if "_" not in name else name


def _unknown(path: str, where: str) -> GatewayError:
    kind = "path variable" if where == "path" else "query parameter"
    return invalid_input(f"unknown {kind} {path!r}", path, f"not a {kind} of this route")
