"""The REST routes, read from the `google.api.http` annotation of every `wfe.v1` RPC (AIP-127).

The gateway builds them from the descriptors at start, so REST and gRPC cannot drift: a new
RPC without an annotation, or two bindings of one path and verb, stops the gateway before it
serves. A path template is literal segments and `{field}` variables (a dotted path such as
`{workflow.id}` reaches into a message), optionally ending in an AIP-136 custom verb
(`/api/workflows/{id}:activate`). A variable takes one segment without `/` or `:`.

`Router.match` finds the route of a request: the one whose path and verb match; when the path
matches only under other verbs, a 405 naming them in `Allow`; when nothing matches, a 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from gateway.errors import GatewayError
from wfe.v1 import event_pb2, execution_pb2, notification_pb2, tenant_pb2, workflow_pb2

API_MODULES: Final[tuple[ModuleType, ...]] = (
    tenant_pb2,
    workflow_pb2,
    execution_pb2,
    event_pb2,
    notification_pb2,
)
VERBS: Final = ("get", "put", "post", "delete", "patch")
VARIABLE: Final = re.compile(r"^\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(?:=\*)?\}$")
LITERAL: Final = re.compile(r"^[A-Za-z0-9._~-]+$")
CUSTOM_VERB: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of one RPC.

    Attributes:
        verb: The HTTP method, upper case.
        template: The path template as the annotation writes it.
        method: The RPC's descriptor.
        body: "" (no body), "*" (the whole request) or the request field the body fills.
        response_body: "" (the whole response) or the response field the body is.
        variables: The request fields the path's variables fill, in order.
    """

    verb: str
    template: str
    method: MethodDescriptor
    body: str
    response_body: str
    variables: tuple[str, ...]
    pattern: re.Pattern[str]

    @property
    def grpc_method(self) -> str:
        """The method as gRPC names it on the wire: `/wfe.v1.WorkflowService/GetWorkflow`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        """Whether the RPC streams its answers (served as Server-Sent Events)."""
        return bool(self.method.server_streaming)

    @property
    def request_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def response_type(self) -> Descriptor:
        """What the HTTP answer (or each event of a stream) holds: the response message, or
        its `response_body` field's message."""
        output = self.method.output_type
        if self.response_body:
            return output.fields_by_name[self.response_body].message_type
        return output

    @property
    def literal_segments(self) -> int:
        return sum(1 for part in self.template.split("/") if part and not part.startswith("{"))


def rules(method: MethodDescriptor) -> list[http_pb2.HttpRule]:
    """The method's HTTP rule and its additional bindings; empty when it has none."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def api_methods(modules: Iterable[ModuleType] = API_MODULES) -> Iterator[MethodDescriptor]:
    """Every RPC of every service in `modules`."""
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def build_routes(modules: Iterable[ModuleType] = API_MODULES) -> tuple[Route, ...]:
    """Every binding of every RPC, most literal first.

    Raises:
        ValueError: An RPC has no annotation, a template or body names no field, or two
            bindings share a path and verb.
    """
    built: list[Route] = []
    for method in api_methods(modules):
        bindings = rules(method)
        if not bindings:
            raise ValueError(f"{method.full_name} has no google.api.http annotation")
        built.extend(_route(method, rule) for rule in bindings)
    seen: dict[tuple[str, str], str] = {}
    for route in built:
        shape = (route.verb, re.sub(r"\{[^}]*\}", "{}", route.template))
        if shape in seen:
            raise ValueError(f"{route.method.full_name} and {seen[shape]} share {route.template}")
        seen[shape] = route.method.full_name
    return tuple(sorted(built, key=lambda r: (-r.literal_segments, r.template, r.verb)))


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in VERBS:
        raise ValueError(f"{method.full_name}: unsupported HTTP rule {kind!r}")
    template = getattr(rule, kind)
    pattern, variables = compile_template(template, method.full_name)
    request = method.input_type
    for variable in variables:
        _field(request, variable, method.full_name)
    if rule.body not in ("", "*"):
        _message_field(request, rule.body, method.full_name)
    if rule.response_body:
        _message_field(method.output_type, rule.response_body, method.full_name)
    return Route(
        verb=kind.upper(),
        template=template,
        method=method,
        body=rule.body,
        response_body=rule.response_body,
        variables=variables,
        pattern=pattern,
    )


def compile_template(template: str, owner: str = "") -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The regular expression a path template matches and the fields of its variables."""
    path, _, verb = template.partition(":")
    if not path.startswith("/") or (verb and not CUSTOM_VERB.match(verb)):
        raise ValueError(f"{owner}: bad path template {template!r}")
    variables: list[str] = []
    parts = []
    for segment in path.split("/")[1:]:
        variable = VARIABLE.match(segment)
        if variable:
            parts.append(f"(?P<v{len(variables)}>[^/:]+)")
            variables.append(variable.group(1))
        elif LITERAL.match(segment):
            parts.append(re.escape(segment))
        else:
            raise ValueError(f"{owner}: unsupported segment {segment!r} in {template!r}")
    suffix = f":{re.escape(verb)}" if verb else ""
    return re.compile("/" + "/".join(parts) + suffix), tuple(variables)


def _field(message: Descriptor, path: str, owner: str) -> Any:
    field = None
    for name in path.split("."):
        if message is None or name not in message.fields_by_name:
            raise ValueError(f"{owner}: no field {path!r}")
        field = message.fields_by_name[name]
        message = field.message_type
    return field


def _message_field(message: Descriptor, name: str, owner: str) -> None:
    field = message.fields_by_name.get(name)
    if field is None or field.message_type is None or field.is_repeated:
        raise ValueError(f"{owner}: {name!r} is not a message field of {message.full_name}")


class Router:
    """Finds the route of a request among `routes` (most literal first)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, verb: str, path: str) -> tuple[Route, Mapping[str, str]]:
        """The route for `verb` on `path` and the values of its variables.

        Raises:
            GatewayError: 404 `not_found` for a path no route has; 405 `method_not_allowed`,
                with `Allow`, for a path only other verbs have.
        """
        path = path.rstrip("/") or "/"
        allowed = []
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.verb == verb:
                values = {route.variables[int(k[1:])]: v for k, v in found.groupdict().items()}
                return route, values
            allowed.append(route.verb)
        if allowed:
            verbs = ", ".join(sorted(set(allowed)))
            raise GatewayError(
                405,
                "method_not_allowed",
                f"{verb} is not allowed on {path}; use {verbs}",
                {"allowed_methods": verbs},
                headers={"Allow": verbs},
            )
        raise GatewayError(404, "not_found", f"no route {path}", {"path": path})
