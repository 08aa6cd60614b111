"""The OpenAPI 3.1 document of the REST routes, built from the descriptors they come from.

One operation per route (`gateway.routes`), so the document cannot drift from what the
gateway serves: path variables, query parameters (what `gateway.transcode` lets the query
set), the body the route takes, the answer (after `response_body`; Server-Sent Events for
the streaming RPCs), seed 004's error body for every 4XX and 5XX, and the credentials every
call needs: a bearer token and `X-Tenant-ID`, both checked by the server. Descriptions come
from the protos' comments (`gateway.comments`); schemas from `gateway.schemas`.

OpenAPI forbids two paths that differ only in their variables' names, so routes of one
shape share the first one's path (`PATCH /api/workflows/{workflow.id}` is documented under
`/api/workflows/{id}`, its parameter saying which field it fills).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.comments import proto_comments
from gateway.routes import API_MODULES, Route, api_methods, rules
from gateway.schemas import WELL_KNOWN, Schema, Schemas, ref


def _flat(text: str) -> str:
    """Wrapped source text as one line: a description is Markdown, where a newline is a space."""
    return " ".join(text.split())


OPENAPI_VERSION: Final = "3.1.0"
TITLE: Final = "wfe REST gateway"
API_VERSION: Final = "v1"
SECURITY: Final[list[dict[str, list[str]]]] = [{"bearer": [], "tenant": []}]
QUERY_TEXT: Final = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
"""Message fields the query may set, as text; other messages only through their fields."""
QUERY_DEPTH: Final = 3
VARIABLE: Final = re.compile(r"\{([^}=]+)(?:=\*)?\}")
DESCRIPTION: Final = _flat("""
Seed 004's HTTP API over the gRPC service `wfe.v1`. Every call sends a bearer token
(`Authorization: Bearer <jwt>`) and the tenant it acts for (`X-Tenant-ID`); the server checks
both. JSON uses the proto field names; every field without presence is present in answers;
64-bit integers are strings and enums their value names. Every failure answers the error
body with `X-Request-ID`. Live updates: the WebSocket `/api/workflows/ws` (README,
"WebSocket /api/workflows/ws") and the Server-Sent Events of the `:watch` and `:subscribe`
routes.""")
ERROR_DESCRIPTION: Final = _flat("""
Seed 004's error body. `code` is the server's reason in lower case (`workflow_not_found`,
`execution_not_found`, `invalid_workflow_definition`, `workflow_execution_error`,
`step_configuration_error`, `invalid_input`, `timeout`, `permission_denied`,
`tier_restriction`, `unauthenticated`, `unavailable`, `internal`, and the gateway's own
`not_found`, `method_not_allowed`, `payload_too_large`, `unsupported_media_type`); `details`
holds its metadata, and `field_violations` for invalid input; `request_id` is the one in
`X-Request-ID`. The status follows the gRPC code (README, "REST gateway").""")
SSE_DESCRIPTION: Final = _flat("""
Server-Sent Events, one per answer: `data:` the answer's JSON on one line (the schema in
`x-event-data`), `event:` the event's type (or `snapshot`), `id:` its event id to resume
from with `Last-Event-ID`. A failure once the stream has started is a last event named
`error` holding the error body.""")


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`, one operation each."""
    comments = proto_comments(API_MODULES)
    schemas = Schemas(comments)
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, str] = {}
    bindings: dict[str, int] = {}
    tags: dict[str, str] = {}
    for route in _in_declaration_order(routes):
        service = route.method.containing_service
        tags.setdefault(service.name, comments.get(service.full_name, ""))
        shape = VARIABLE.sub("{}", route.template)
        path = shapes.setdefault(shape, _openapi_path(route.template))
        names = VARIABLE.findall(path)
        number = bindings[route.method.full_name] = bindings.get(route.method.full_name, 0) + 1
        operation_id = f"{service.name}_{route.method.name}" + (f"_{number}" if number > 1 else "")
        operation = _operation(route, operation_id, names, schemas, comments)
        paths.setdefault(path, {})[route.verb.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": API_VERSION,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": name, **({"description": text} if text else {})} for name, text in tags.items()
        ],
        "security": SECURITY,
        "paths": paths,
        "components": _components(schemas),
    }


def _components(schemas: Schemas) -> dict[str, Any]:
    """The credentials, shared parameters, headers and error answer, and every schema named."""
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A token that grants the tenant named in `X-Tenant-ID`.",
            },
            "tenant": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Tenant-ID",
                "description": "The tenant the call acts for; the token must grant it.",
            },
        },
        "parameters": {
            "RequestId": {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": "Quoted in the answer, the error body and the server's logs; "
                "a new UUID when absent or not 1 to 128 of `A-Za-z0-9._:-`.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            },
            "LastEventId": {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this event id (sent as `after_event_id`).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
        },
        "headers": {
            "RequestId": {
                "description": "The request id: the caller's, or one the gateway made.",
                "schema": {"type": "string"},
            }
        },
        "responses": {
            "Error": {
                "description": ERROR_DESCRIPTION,
                "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": ref("Error")}},
            }
        },
        "schemas": {**_error_schemas(), **dict(sorted(schemas.components.items()))},
    }


def _in_declaration_order(routes: Iterable[Route]) -> list[Route]:
    """Routes as the protos declare them: by service and method, bindings in order."""
    position = {method.full_name: index for index, method in enumerate(api_methods())}

    def order(route: Route) -> tuple[int, int]:
        templates = [
            getattr(rule, rule.WhichOneof("pattern") or "") for rule in rules(route.method)
        ]
        binding = templates.index(route.template) if route.template in templates else 0
        return position.get(route.method.full_name, len(position)), binding

    return sorted(routes, key=order)


def _openapi_path(template: str) -> str:
    return VARIABLE.sub(lambda match: "{" + match.group(1) + "}", template)


def _operation(
    route: Route,
    operation_id: str,
    names: Sequence[str],
    schemas: Schemas,
    comments: dict[str, str],
) -> dict[str, Any]:
    described = comments.get(route.method.full_name, "")
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [route.method.containing_service.name],
        "summary": _first_sentence(described) or route.method.name,
    }
    if described and described != operation["summary"]:
        operation["description"] = described
    parameters = [
        _path_parameter(route, variable, name, schemas)
        for variable, name in zip(route.variables, names, strict=True)
    ]
    parameters += _query_parameters(route, schemas)
    parameters.append({"$ref": "#/components/parameters/RequestId"})
    if route.streaming:
        parameters.append({"$ref": "#/components/parameters/LastEventId"})
    operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = _request_body(route, schemas)
    operation["responses"] = {
        "200": _success(route, schemas),
        "4XX": {"$ref": "#/components/responses/Error"},
        "5XX": {"$ref": "#/components/responses/Error"},
    }
    operation["security"] = SECURITY
    operation["x-grpc-method"] = route.grpc_method
    return operation


def _first_sentence(text: str) -> str:
    first = text.split("\n\n", 1)[0]
    end = first.find(". ")
    return first[: end + 1] if end != -1 else first


def _path_parameter(route: Route, variable: str, name: str, schemas: Schemas) -> dict[str, Any]:
    schema = schemas.field(_field_at(route.request_type, variable))
    description = schema.pop("description", "")
    if variable != name:
        description = f"{description} Fills the request field `{variable}`.".strip()
    parameter = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    names = path.split(".")
    for name in names[:-1]:
        message = message.fields_by_name[name].message_type
    return message.fields_by_name[names[-1]]


def _query_parameters(route: Route, schemas: Schemas) -> list[dict[str, Any]]:
    """What `gateway.transcode` lets the query set: fields the body and path leave."""
    if route.body == "*":
        return []
    found = []
    for name, field in _query_fields(route.request_type, "", QUERY_DEPTH):
        if name in route.variables:
            continue
        if route.body and (name == route.body or name.startswith(route.body + ".")):
            continue
        schema = schemas.field(field)
        description = schema.pop("description", "")
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
        if description:
            parameter["description"] = description
        if field.is_repeated:
            parameter.update(style="form", explode=True)
        found.append(parameter)
    return found


def _query_fields(
    message: Descriptor, prefix: str, depth: int
) -> Iterable[tuple[str, FieldDescriptor]]:
    for field in message.fields:
        name = prefix + field.name
        kind = field.message_type
        if kind is None or kind.full_name in QUERY_TEXT:
            yield name, field
        elif (
            depth > 1
            and not field.is_repeated
            and kind.full_name not in WELL_KNOWN
            and not kind.GetOptions().map_entry
        ):
            yield from _query_fields(kind, name + ".", depth - 1)


def _request_body(route: Route, schemas: Schemas) -> dict[str, Any]:
    if route.body == "*":
        taken = {variable for variable in route.variables if "." not in variable}
        message = route.request_type
        schema = schemas.message(message, taken) if taken else schemas.of(message)
        description = "The request; path variables are taken from the path."
        required = False
    else:
        schema = schemas.field(route.request_type.fields_by_name[route.body])
        description = f"The request's `{route.body}`."
        required = True
    return {
        "description": description,
        "required": required,
        "content": {"application/json": {"schema": schema}},
    }


def _success(route: Route, schemas: Schemas) -> dict[str, Any]:
    answer = schemas.of(route.response_type)
    headers = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
    if route.streaming:
        return {
            "description": SSE_DESCRIPTION,
            "headers": headers,
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "x-event-data": answer}
            },
        }
    return {
        "description": f"The `{route.response_type.name}`.",
        "headers": headers,
        "content": {"application/json": {"schema": answer}},
    }


def _error_schemas() -> dict[str, Schema]:
    """Seed 004's error body and its field violations."""
    return {
        "Error": {
            "type": "object",
            "description": ERROR_DESCRIPTION,
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details", "request_id"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "lower_snake_case, e.g. `workflow_not_found`.",
                        },
                        "message": {"type": "string", "description": "Safe to show."},
                        "details": {
                            "type": "object",
                            "description": "The reason's metadata (strings), and "
                            "`field_violations` for invalid input.",
                            "properties": {
                                "field_violations": {
                                    "type": "array",
                                    "items": ref("FieldViolation"),
                                }
                            },
                        },
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
        "FieldViolation": {
            "type": "object",
            "required": ["field", "description"],
            "properties": {
                "field": {
                    "type": "string",
                    "description": "Where, as sent: `steps[2].retry.max_attempts`, or a "
                    "parameter's name.",
                },
                "description": {"type": "string"},
            },
        },
    }
