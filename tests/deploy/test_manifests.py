"""The operator's deployment files, checked against what the service really offers.

The Dockerfile, deploy/compose.yaml and deploy/kubernetes/ start `wfe` commands with `WFE_*`
settings; Prometheus, nginx and Grafana name processes and metrics. None of it runs in the
suite (no Docker engine, no cluster), so these tests read the files: each schema validates,
each command and option exists on the `wfe` command line, each variable is a setting, each
dashboard metric is one the service exports, and the files agree with one another.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any, Final

import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml

from cli.main import app
from foundation.settings import NOT_SETTINGS, setting_names

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "deploy"
DOCKERFILE: Final = ROOT / "Dockerfile"
DOCKERIGNORE: Final = ROOT / ".dockerignore"
COMPOSE: Final = DEPLOY / "compose.yaml"
KUBERNETES: Final = DEPLOY / "kubernetes"
KUSTOMIZATION: Final = KUBERNETES / "kustomization.yaml"
PROMETHEUS: Final = DEPLOY / "prometheus" / "prometheus.yml"
NGINX: Final = DEPLOY / "nginx" / "grpc.conf"
DASHBOARD: Final = DEPLOY / "grafana" / "wfe-dashboard.json"

METRICS_PORT: Final = 9464
GRPC_PORT: Final = 50051
# Variables other than settings that a deployment may set: the OpenTelemetry SDK's, the
# database and broker images' own, Python's, and the worker's pod name (downward API).
OTHER_VARIABLE_PREFIXES: Final = ("OTEL_", "POSTGRES_", "RABBITMQ_", "PYTHON")
OTHER_VARIABLES: Final = frozenset({"POD_NAME"})
# The image puts its virtualenv first on PATH, so `wfe` and `python` are the venv's.
IMAGE_VARIABLES: Final = frozenset({"PATH"})
SUFFIXES: Final = ("_total", "_bucket", "_sum", "_count")
SHELLS: Final = frozenset({"sh", "/bin/sh", "bash", "/bin/bash"})


# --- reading the files ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, value = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), value.strip(), stage))
    return tuple(instructions)


def stage_of(keyword: str, stage: int) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword and i.stage == stage]


def final_stage() -> int:
    return max(i.stage for i in dockerfile())


def exec_form(keyword: str) -> list[str]:
    """The final stage's last ENTRYPOINT or CMD, which must be in JSON (exec) form."""
    found = stage_of(keyword, final_stage())
    assert found, f"the final stage has no {keyword}"
    value = json.loads(found[-1].value)
    assert isinstance(value, list), f"{keyword} is not in exec form: {found[-1].value}"
    return [str(part) for part in value]


def stage_names() -> dict[str, int]:
    names = {}
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            if len(words) == 3 and words[1].upper() == "AS":
                names[words[2]] = instruction.stage
    return names


def dockerfile_variables() -> Iterator[tuple[str, str]]:
    for instruction in dockerfile():
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.value):
                name, equals, _ = pair.partition("=")
                assert equals, f"ENV without '=' (the legacy form): {instruction.value}"
                yield f"Dockerfile stage {instruction.stage}", name


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def wfe_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the wfe image (from the shared `x-wfe` anchor)."""
    image = compose()["x-wfe"]["image"]
    return {name: svc for name, svc in services().items() if svc.get("image") == image}


def compose_argv(service: dict[str, Any]) -> list[str]:
    """What a service runs: its entrypoint (else the image's) and its command."""
    entrypoint = service.get("entrypoint", exec_form("ENTRYPOINT"))
    command = service.get("command", exec_form("CMD"))
    as_list = [shlex.split(x) if isinstance(x, str) else list(x) for x in (entrypoint, command)]
    return as_list[0] + as_list[1]


def long_running(service: dict[str, Any]) -> bool:
    return service.get("restart") != "no"


def runs(service: dict[str, Any], subcommand: str) -> bool:
    argv = compose_argv(service)
    return len(argv) > 1 and argv[1] == subcommand


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service.get("healthcheck", {}).get("test", [])
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    if test and test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test[1:]) if test and test[0] == "CMD" else []


@dataclass(frozen=True)
class Document:
    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.file}:{self.kind}/{self.name}"


@cache
def documents() -> tuple[Document, ...]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path == KUSTOMIZATION:
            continue
        for body in yaml.safe_load_all(path.read_text()):
            if body is not None:
                found.append(Document(path.name, body))
    return tuple(found)


def of_kind(kind: str) -> list[Document]:
    return [d for d in documents() if d.kind == kind]


def pod_specs() -> Iterator[tuple[Document, dict[str, Any]]]:
    for document in documents():
        template = document.body.get("spec", {}).get("template")
        if template is not None:
            yield document, template["spec"]


def containers() -> Iterator[tuple[Document, dict[str, Any]]]:
    for document, spec in pod_specs():
        for container in (*spec.get("initContainers", ()), *spec["containers"]):
            yield document, container


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy a label selector (matchLabels and In/NotIn/Exists)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", ()):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", ())
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels() -> list[dict[str, str]]:
    return [d.body["spec"]["template"]["metadata"]["labels"] for d, _ in pod_specs()]


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    where: str
    argv: tuple[str, ...]


def unwrap_shell(argv: list[str]) -> list[str]:
    """`sh -c "exec wfe ..."` as the argv the shell ends up running."""
    if len(argv) == 3 and argv[0] in SHELLS and argv[1] == "-c":
        words = shlex.split(argv[2])
        return words[1:] if words and words[0] == "exec" else words
    return argv


def invocations() -> list[Invocation]:
    """Every `wfe` command a role runs, from every file that starts one."""
    found = [Invocation("Dockerfile:ENTRYPOINT+CMD", (*exec_form("ENTRYPOINT"), *exec_form("CMD")))]
    for name, service in wfe_services().items():
        found.append(Invocation(f"compose:{name}:command", tuple(compose_argv(service))))
        check = healthcheck_argv(service)
        if check and unwrap_shell(check)[0] == "wfe":
            found.append(Invocation(f"compose:{name}:healthcheck", tuple(unwrap_shell(check))))
    for document, container in containers():
        where = f"{document.id}:{container['name']}"
        command = container.get("command", exec_form("ENTRYPOINT"))
        found.append(Invocation(f"{where}:args", (*command, *container.get("args", ()))))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            exec_probe = container.get(probe, {}).get("exec")
            if exec_probe:
                argv = unwrap_shell(list(exec_probe["command"]))
                found.append(Invocation(f"{where}:{probe}", tuple(argv)))
    return found


# Typer builds click commands (its own vendored copy of click, so no isinstance checks on
# the `click` package's classes): a group has `commands`, an option's `param_type_name`
# is "option".
@cache
def wfe_command() -> Any:
    return typer.main.get_command(app)


def resolve(argv: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The `wfe` (sub)command `argv` names, and the arguments left for it."""
    command = wfe_command()
    rest = list(argv[1:])
    path = ["wfe"]
    while hasattr(command, "commands"):
        assert rest, f"`{' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        choices = ", ".join(sorted(command.commands))
        assert name in command.commands, f"`{' '.join(path)}` has no {name!r}; it has {choices}"
        path.append(name)
        command = command.commands[name]
    return command, rest


def options_of(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts, param.secondary_opts)
    return names


# --- the Dockerfile -------------------------------------------------------------------------


def test_dockerfile_builds_in_stages_on_slim_python_311() -> None:
    bases = [i.value.split()[0] for i in dockerfile() if i.keyword == "FROM"]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    assert set(bases) == {"python:3.11-slim-bookworm"}, bases


def test_dockerfile_final_stage_runs_as_a_non_root_user() -> None:
    users = stage_of("USER", final_stage())
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].value.split(":")[0]
    assert user.isdigit(), "a numeric uid, which runAsNonRoot can verify"
    assert int(user) != 0


def test_dockerfile_installs_the_pinned_runtime_lock_into_the_final_image() -> None:
    installs = [
        i
        for i in dockerfile()
        if i.keyword == "RUN"
        and "pip install" in i.value
        and "requirements-runtime.lock" in i.value
    ]
    assert installs, "no `pip install -r requirements-runtime.lock`"
    assert all("-r requirements-runtime.lock" in i.value for i in installs)
    builder = installs[0].stage
    assert any(
        "--no-deps" in i.value and "pip install" in i.value for i in stage_of("RUN", builder)
    ), "the project itself goes in with --no-deps: every dependency comes from the lock"
    named = {stage: name for name, stage in stage_names().items()}
    source = f"--from={named.get(builder, builder)}"
    copies = [i.value.split() for i in stage_of("COPY", final_stage())]
    assert any(words[0] == source and "/opt/wfe" in words for words in copies), (
        "the final stage copies the builder's /opt/wfe"
    )
    assert not any("pip install" in i.value for i in stage_of("RUN", final_stage())), (
        "the final stage installs nothing of its own"
    )


def test_dockerfile_copies_only_files_the_build_context_keeps() -> None:
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for instruction in dockerfile():
        if instruction.keyword != "COPY" or "--from=" in instruction.value:
            continue
        *sources, _ = [w for w in instruction.value.split() if not w.startswith("--")]
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file in the repository"
            assert not any(fnmatch(path, pattern) for pattern in ignored), (
                f"COPY {source}: .dockerignore leaves it out of the build context"
            )


def test_dockerignore_keeps_local_state_and_tests_out_of_the_context() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "tests", ".wfe"} <= ignored


def test_dockerfile_runs_wfe_serve_by_default_and_exposes_its_ports() -> None:
    assert exec_form("ENTRYPOINT") == ["wfe"]
    assert exec_form("CMD") == ["serve"]
    exposed = {
        int(p.split("/")[0]) for i in stage_of("EXPOSE", final_stage()) for p in i.value.split()
    }
    assert {GRPC_PORT, 8080, METRICS_PORT} <= exposed


# --- commands and settings, across the Dockerfile, compose and Kubernetes ------------------


@pytest.mark.parametrize("invocation", invocations(), ids=lambda i: i.where)
def test_every_role_runs_a_real_wfe_command(invocation: Invocation) -> None:
    argv = invocation.argv
    assert argv and argv[0] == "wfe", f"{invocation.where} runs {argv!r}, not wfe"
    command, rest = resolve(argv)
    known = options_of(command)
    given = {word.split("=", 1)[0] for word in rest if word.startswith("--")}
    unknown = given - known
    assert not unknown, f"`{' '.join(argv)}`: no option {sorted(unknown)}; {sorted(known)} exist"


def variables() -> Iterator[tuple[str, str]]:
    """(where, name) of every environment variable the deployments set."""
    yield from dockerfile_variables()
    for name, service in services().items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for variable in environment:
            yield f"compose:{name}", variable
    for document, container in containers():
        for variable in container.get("env", ()):
            yield f"{document.id}:{container['name']}", variable["name"]
    # ConfigMaps and Secrets reach the containers whole, through envFrom.
    for document in (*of_kind("ConfigMap"), *of_kind("Secret")):
        for key in (*document.body.get("data", {}), *document.body.get("stringData", {})):
            yield document.id, key


def test_every_wfe_variable_is_a_known_setting() -> None:
    known = setting_names() | NOT_SETTINGS
    wrong = []
    for where, name in variables():
        if name.startswith("WFE_"):
            ok = name in known
        else:
            image_level = where.startswith("Dockerfile") and name in IMAGE_VARIABLES
            ok = name.startswith(OTHER_VARIABLE_PREFIXES) or name in OTHER_VARIABLES or image_level
        if not ok:
            wrong.append(f"{where}: {name}")
    assert not wrong, "unknown variables (wfe refuses unknown WFE_ ones at start):\n" + "\n".join(
        wrong
    )


# --- compose ---------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    errors = sorted(validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_runs_every_wfe_role() -> None:
    roles = {compose_argv(service)[1] for service in wfe_services().values()}
    assert {"serve", "worker", "beat", "gateway", "migrate"} <= roles
    assert sum(runs(s, "serve") for s in wfe_services().values()) == 2
    assert sum(runs(s, "worker") for s in wfe_services().values()) == 2
    assert sum(runs(s, "beat") for s in wfe_services().values()) == 1, "one beat, never two"


def test_compose_migrates_once_before_anything_else_starts() -> None:
    migrations = [name for name, s in wfe_services().items() if runs(s, "migrate")]
    assert len(migrations) == 1
    (migrate,) = migrations
    assert services()[migrate]["restart"] == "no"
    for name, service in wfe_services().items():
        if name == migrate or runs(service, "gateway"):
            continue
        condition = service.get("depends_on", {}).get(migrate, {}).get("condition")
        assert condition == "service_completed_successfully", f"{name} does not wait for {migrate}"


def test_compose_restarts_every_long_running_role() -> None:
    for name, service in services().items():
        if long_running(service):
            assert service.get("restart") == "unless-stopped", name


def test_compose_depends_only_on_services_that_start_without_a_profile() -> None:
    for name, service in services().items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            if "profiles" not in service:
                assert "profiles" not in services()[dependency], (
                    f"{name} depends on {dependency}, which only starts with its profile"
                )


def test_compose_health_checks_servers_gateway_and_workers() -> None:
    for name, service in wfe_services().items():
        if any(runs(service, role) for role in ("serve", "gateway", "worker")):
            assert healthcheck_argv(service), f"{name} has no healthcheck"


def test_compose_worker_health_check_pings_its_own_node() -> None:
    for name, service in wfe_services().items():
        if runs(service, "worker"):
            node = compose_argv(service)[compose_argv(service).index("--name") + 1]
            check = healthcheck_argv(service)
            assert check[:2] == ["wfe", "worker-ping"], name
            assert check[check.index("--name") + 1] == node, name
            assert node == f"wfe@{service['hostname']}", name


def test_compose_python_health_checks_are_valid_python() -> None:
    for name, service in services().items():
        check = healthcheck_argv(service)
        if check[:2] == ["python", "-c"]:
            compile(check[2], f"compose:{name}:healthcheck", "exec")


def test_compose_owner_credentials_reach_the_migration_alone() -> None:
    for name, service in wfe_services().items():
        if "WFE_ADMIN_DATABASE_URL" in service.get("environment", {}):
            assert runs(service, "migrate"), f"{name} gets the owner's database URL"


# --- Prometheus and nginx ----------------------------------------------------------------------


def scrape_targets() -> dict[str, str]:
    """target -> its job's metrics path, for every static target."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {}
    for job in config["scrape_configs"]:
        for group in job.get("static_configs", ()):
            for target in group["targets"]:
                targets[target] = job.get("metrics_path", "/metrics")
    return targets


def test_prometheus_scrapes_every_wfe_process_and_itself() -> None:
    targets = scrape_targets()
    assert "localhost:9090" in targets, "Prometheus scrapes itself"
    for name, service in wfe_services().items():
        if long_running(service):
            target = f"{name}:{METRICS_PORT}"
            assert targets.get(target) == "/metrics", f"{name} is not scraped at {target}/metrics"


def test_prometheus_scrapes_only_services_that_exist() -> None:
    for target in scrape_targets():
        host = target.rsplit(":", 1)[0]
        assert host == "localhost" or host in services(), target


def nginx_upstream(name: str) -> list[str]:
    text = re.sub(r"#.*", "", NGINX.read_text())
    block = re.search(r"upstream\s+" + re.escape(name) + r"\s*\{(.*?)\}", text, re.S)
    assert block, f"no upstream {name} in {NGINX.name}"
    return re.findall(r"^\s*server\s+(\S+?)[\s;]", block.group(1), re.M)


def test_nginx_proxies_grpc_over_http2_to_every_server() -> None:
    text = re.sub(r"#.*", "", NGINX.read_text())
    assert re.search(rf"listen\s+{GRPC_PORT}\s*;", text)
    assert re.search(r"http2\s+on\s*;", text)
    assert "grpc_pass grpc://wfe_servers;" in text
    assert "/grpc.health.v1.Health/" in text
    servers = {name for name, s in wfe_services().items() if runs(s, "serve")}
    assert set(nginx_upstream("wfe_servers")) == {f"{name}:{GRPC_PORT}" for name in servers}


def test_compose_gateway_calls_the_grpc_proxy() -> None:
    (proxy,) = [
        n for n, s in services().items() if any("grpc.conf" in v for v in s.get("volumes", ()))
    ]
    for name, service in wfe_services().items():
        if runs(service, "gateway"):
            assert service["environment"]["WFE_GATEWAY_TARGET"] == f"{proxy}:{GRPC_PORT}", name


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.mark.parametrize("document", documents(), ids=lambda d: d.id)
def test_kubernetes_manifest_validates(document: Document) -> None:
    version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(document.body, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{document.id} against Kubernetes {version}: {path}: {error.message}")


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert sorted(listed) == sorted(files)


def test_kubernetes_resources_live_in_the_wfe_namespace_with_labels() -> None:
    for document in documents():
        metadata = document.body["metadata"]
        labels = metadata.get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "wfe", document.id
        if document.kind == "Namespace":
            assert document.name == "wfe"
            continue
        assert metadata.get("namespace") == "wfe", document.id
        assert labels.get("app.kubernetes.io/component"), document.id


def test_kubernetes_pods_run_non_root_on_a_read_only_root() -> None:
    for document, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, document.id
        tmp = [v["name"] for v in spec.get("volumes", ()) if "emptyDir" in v]
        for container in spec["containers"]:
            context = container["securityContext"]
            where = f"{document.id}:{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", ())}
            assert mounts.get("/tmp") in tmp, f"{where}: no writable emptyDir at /tmp"


def test_kubernetes_pods_get_no_service_link_variables() -> None:
    """Service links would inject a `<SERVICE>_PORT` variable for each wfe-* Service (a
    `WFE_`-prefixed name for `wfe-server`), and wfe refuses to start on a `WFE_` variable
    that is no setting."""
    for document, spec in pod_specs():
        assert spec.get("enableServiceLinks") is False, document.id


def test_kubernetes_selectors_pick_existing_pods() -> None:
    for document in of_kind("Deployment"):
        spec = document.body["spec"]
        assert labels_match(spec["selector"], spec["template"]["metadata"]["labels"]), document.id
    for document in (*of_kind("Service"), *of_kind("PodDisruptionBudget")):
        selector = document.body["spec"]["selector"]
        selector = selector if "matchLabels" in selector else {"matchLabels": selector}
        assert any(labels_match(selector, labels) for labels in pod_labels()), document.id
    for document in of_kind("NetworkPolicy"):
        selector = document.body["spec"]["podSelector"]
        assert not selector or any(labels_match(selector, ls) for ls in pod_labels()), document.id


def test_kubernetes_references_resolve() -> None:
    names = {(d.kind, d.name) for d in documents()}
    for document, container in containers():
        for source in container.get("envFrom", ()):
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in source:
                    assert (kind, source[key]["name"]) in names, document.id
    for document in of_kind("HorizontalPodAutoscaler"):
        target = document.body["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in names, document.id


def component(document: Document) -> str:
    return str(document.body["metadata"]["labels"]["app.kubernetes.io/component"])


def workload(name: str) -> tuple[Document, dict[str, Any]]:
    (found,) = [(d, s) for d, s in pod_specs() if component(d) == name]
    return found


def test_kubernetes_servers_probe_grpc_health_on_their_port() -> None:
    document, spec = workload("server")
    assert document.body["spec"]["replicas"] >= 2
    (container,) = spec["containers"]
    assert GRPC_PORT in {p["containerPort"] for p in container["ports"]}
    assert METRICS_PORT in {p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == GRPC_PORT, probe


def test_kubernetes_gateway_probes_healthz_and_readyz() -> None:
    _, spec = workload("gateway")
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == 8080, probe


def test_kubernetes_worker_is_pinged_under_its_own_pod_name() -> None:
    _, spec = workload("worker")
    (container,) = spec["containers"]
    args = container["args"]
    assert args[args.index("--name") + 1] == "wfe@$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The kubelet does not expand valueFrom variables in a probe's command: a shell must.
    ping = unwrap_shell(container["livenessProbe"]["exec"]["command"])
    assert ping[:2] == ["wfe", "worker-ping"]
    assert ping[ping.index("--name") + 1] in {"wfe@${POD_NAME}", "wfe@$POD_NAME"}
    assert spec["terminationGracePeriodSeconds"] >= 60


def test_kubernetes_runs_exactly_one_beat() -> None:
    document, _ = workload("beat")
    assert document.body["spec"]["replicas"] == 1
    assert document.body["spec"]["strategy"]["type"] == "Recreate"


def test_kubernetes_owner_credentials_reach_the_migration_alone() -> None:
    owners = {
        d.name
        for d in of_kind("Secret")
        if "WFE_ADMIN_DATABASE_URL" in d.body.get("stringData", {})
    }
    assert owners
    for document, container in containers():
        secrets = {s["secretRef"]["name"] for s in container.get("envFrom", ()) if "secretRef" in s}
        if secrets & owners:
            assert document.kind == "Job" and container["args"] == ["migrate"], document.id


def test_kubernetes_workers_scale_on_the_queue_depth() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa.body["spec"]["scaleTargetRef"]["name"] == workload("worker")[0].name
    (metric,) = hpa.body["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "wfe_queue_depth"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": "wfe"}
    assert "replicas" not in workload("worker")[0].body["spec"], "the autoscaler owns it"


def test_kubernetes_disruption_budgets_cover_server_gateway_and_worker() -> None:
    covered = {
        component(w)
        for w, _ in pod_specs()
        for pdb in of_kind("PodDisruptionBudget")
        if labels_match(
            pdb.body["spec"]["selector"], w.body["spec"]["template"]["metadata"]["labels"]
        )
    }
    assert {"server", "gateway", "worker"} <= covered


def test_kubernetes_network_policy_denies_ingress_by_default() -> None:
    policies = [d.body["spec"] for d in of_kind("NetworkPolicy")]
    assert any(
        p["podSelector"] == {} and p["policyTypes"] == ["Ingress"] and not p.get("ingress")
        for p in policies
    )
    allowed = {
        port["port"] for p in policies for rule in p.get("ingress", ()) for port in rule["ports"]
    }
    assert {8080, GRPC_PORT, METRICS_PORT} <= allowed
    egress = {
        port["port"] for p in policies for rule in p.get("egress", ()) for port in rule["ports"]
    }
    assert {53, 5432, 6379, 5672, 443, GRPC_PORT} <= egress


# --- Grafana -----------------------------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_importable_with_a_prometheus_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard_panels():
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_dashboard_queries_only_metrics_the_service_exports() -> None:
    from foundation import metrics

    queried = set()
    for panel in dashboard_panels():
        for target in panel["targets"]:
            for name in re.findall(r"\bwfe_[a-z_]+", target["expr"]):
                for suffix in SUFFIXES:
                    name = name.removesuffix(suffix)
                queried.add(name)
    assert queried, "the dashboard queries no wfe metric"
    unknown = queried - set(metrics.names())
    assert not unknown, f"the service exports no {sorted(unknown)}"
