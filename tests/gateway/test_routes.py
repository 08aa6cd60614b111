"""REST routes come from the protos: every RPC has one, seed 004's paths are as written, and the
README's table is the routes."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pool

from gateway.errors import GatewayError
from gateway.routes import Route, Router, api_methods, build_routes, compile_template, rules
from service.server import SERVICE_NAMES
from tests.test_readme import README


def test_every_rpc_of_every_served_service_has_an_http_rule() -> None:
    pool = descriptor_pool.Default()
    for name in SERVICE_NAMES:
        for method in pool.FindServiceByName(name).methods:
            assert rules(method), f"{method.full_name} has no google.api.http annotation"


def test_the_gateway_routes_every_rpc_it_reads() -> None:
    served = {m.full_name for name in SERVICE_NAMES for m in _service(name).methods}
    assert {m.full_name for m in api_methods()} == served
    assert {r.method.full_name for r in build_routes()} == served


def _service(name: str) -> object:
    return descriptor_pool.Default().FindServiceByName(name)


@pytest.mark.parametrize(
    ("verb", "path", "method", "variables"),
    [
        ("POST", "/api/workflows", "CreateWorkflow", {}),
        ("POST", "/api/workflows/validate-step", "ValidateStep", {}),
        ("GET", "/api/workflows/w-1", "GetWorkflow", {"id": "w-1"}),
        ("GET", "/api/workflows/w-1/", "GetWorkflow", {"id": "w-1"}),
        ("PATCH", "/api/workflows/w-1", "UpdateWorkflow", {"workflow.id": "w-1"}),
        ("POST", "/api/workflows/w-1:activate", "ActivateWorkflow", {"id": "w-1"}),
        ("POST", "/api/workflows:validate", "ValidateWorkflow", {}),
        (
            "GET",
            "/api/workflows/w-1/versions/3",
            "GetWorkflowVersion",
            {"workflow_id": "w-1", "version": "3"},
        ),
        ("GET", "/api/workflows/w-1/versions:diff", "DiffWorkflowVersions", {"workflow_id": "w-1"}),
        ("GET", "/api/workflows/w-1/executions", "ListExecutions", {"workflow_id": "w-1"}),
        ("GET", "/api/executions", "ListExecutions", {}),
        ("GET", "/api/executions/e-1:watch", "WatchExecution", {"execution_id": "e-1"}),
        ("GET", "/api/events:subscribe", "Subscribe", {}),
    ],
)
def test_a_path_finds_its_rpc_and_variables(
    verb: str, path: str, method: str, variables: dict[str, str]
) -> None:
    route, found = Router(build_routes()).match(verb, path)
    assert (route.method.name, dict(found)) == (method, variables)


def test_the_seeds_routes_take_their_bodies_as_the_seed_writes_them() -> None:
    router = Router(build_routes())
    create, _ = router.match("POST", "/api/workflows")
    assert (create.body, create.response_body) == ("workflow", "workflow")  # workflowData as is
    validate_step, _ = router.match("POST", "/api/workflows/validate-step")
    assert (validate_step.body, validate_step.response_body) == ("*", "")  # {step, context}


def test_only_streaming_rpcs_are_served_as_streams() -> None:
    streams = {r.method.name for r in build_routes() if r.streaming}
    assert streams == {"Subscribe", "WatchExecution"}


def test_a_path_no_route_has_is_404_and_one_under_other_verbs_405() -> None:
    router = Router(build_routes())
    with pytest.raises(GatewayError) as missing:
        router.match("GET", "/api/workflows/w-1:explode")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(GatewayError) as other_verb:
        router.match("GET", "/api/workflows/w-1:activate")
    assert (other_verb.value.status, other_verb.value.headers) == (405, {"Allow": "POST"})


@pytest.mark.parametrize(
    "template",
    ["api/workflows", "/api/{name=workflows/*}", "/api/{id}/**", "/api/x:bad-verb", "/api/a b"],
)
def test_a_template_outside_the_supported_grammar_stops_the_gateway(template: str) -> None:
    with pytest.raises(ValueError, match=r"template|segment"):
        compile_template(template)


def routes_table() -> str:
    """The README's table of routes, in the order the protos declare the RPCs."""
    order = {method.full_name: index for index, method in enumerate(api_methods())}
    rows = [
        "| method | path | RPC | body | answer |",
        "|---|---|---|---|---|",
    ]

    def declared(route: Route) -> tuple[int, int]:
        paths = [getattr(rule, rule.WhichOneof("pattern")) for rule in rules(route.method)]
        return order[route.method.full_name], paths.index(route.template)

    for route in sorted(build_routes(), key=declared):
        rows.append(
            f"| `{route.verb}` | `{route.template}` "
            f"| `{route.method.containing_service.name}.{route.method.name}` "
            f"| {_body(route)} | {_answer(route)} |"
        )
    return "\n".join(rows) + "\n"


def _body(route: Route) -> str:
    if not route.body:
        return "—"
    return "the request" if route.body == "*" else f"`{route.body}`"


def _answer(route: Route) -> str:
    shown = f"`{route.response_type.name}`"
    return f"event stream of {shown}" if route.streaming else shown


def test_the_readmes_routes_table_is_the_routes() -> None:
    assert routes_table() in README.read_text(), "regenerate it: tests/gateway/test_routes.py"
