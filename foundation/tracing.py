"""OpenTelemetry traces, configured by the standard `OTEL_*` variables and off by default.

`OTEL_TRACES_EXPORTER=otlp` (OTLP over HTTP/protobuf, to `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `console` turns them on; unset, `none`, or
`OTEL_SDK_DISABLED=true` leaves every span a no-op that costs a function call.

One trace per execution start: the StartExecution call's span context is stored with the
execution (`traceparent()`), and every attempt of its steps, on whichever worker and after
however many broker hops or sweeper re-sends, is a span under it (`span(parent=...)`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:  # the OpenTelemetry packages load only once traces are on
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
SUPPORTED_EXPORTERS: Final = ("otlp", "console")

_enabled = False
_provider: Any = None


class TracingSettingError(ValueError):
    """An `OTEL_*` variable asks for something this build cannot do; start-up stops."""

    code = "unsupported_tracing_setting"


def configure(service_name: str) -> bool:
    """Install the exporters `OTEL_TRACES_EXPORTER` names, for a process called
    `service_name` unless `OTEL_SERVICE_NAME` says otherwise; whether traces are on."""
    global _enabled, _provider
    names = [
        name.strip().lower()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")
        if name.strip()
    ]
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if disabled or not names or names == ["none"]:
        return False
    unknown = sorted(set(names) - set(SUPPORTED_EXPORTERS))
    if unknown:
        raise TracingSettingError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: supported are otlp, console, none"
        )
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if "otlp" in names and protocol not in ("", "http/protobuf"):
        raise TracingSettingError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is supported"
        )
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        # Batched, from a thread of the SDK's (re-made after a fork, as in prefork workers).
        provider.add_span_processor(BatchSpanProcessor(exporter))
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    _provider, _enabled = provider, True
    return True


def enabled() -> bool:
    return _enabled


def flush(timeout_seconds: float = 5.0) -> None:
    """Export what is buffered (a process about to exit)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`, to store; None with traces off."""
    if not _enabled:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    found = carrier.get("traceparent")
    return found if found and TRACEPARENT.match(found) else None


@contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    carrier: Mapping[str, str] | None = None,
    kind: Literal["internal", "server", "client"] = "internal",
    attributes: Mapping[str, str | int | bool] | None = None,
) -> Iterator[Span | None]:
    """A span around the block, current inside it: a child of the stored `parent`
    (`traceparent()`), of the propagated context in `carrier` (incoming call metadata), or
    else of the current span. Nothing at all with traces off."""
    if not _enabled:
        yield None
        return
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    context = None
    if parent is not None and TRACEPARENT.match(parent):
        context = propagate.extract({"traceparent": parent})
    elif carrier is not None:
        context = propagate.extract(dict(carrier))
    tracer = trace.get_tracer("wfe")
    with tracer.start_as_current_span(
        name, context=context, kind=SpanKind[kind.upper()], attributes=dict(attributes or {})
    ) as current:
        yield current


def fail(current: Span | None, code: str, message: str = "") -> None:
    """Mark `current` (from `span`) as ended in error, with the error's code."""
    if current is None:
        return
    from opentelemetry.trace import NonRecordingSpan, Status, StatusCode

    if not isinstance(current, NonRecordingSpan):
        current.set_attribute("wfe.error.code", code)
        current.set_status(Status(StatusCode.ERROR, message or code))
