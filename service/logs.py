"""Logging set-up: every line carries the request id of the call that wrote it, and in
JSON (`WFE_LOG_FORMAT=json`) the tenant, execution and step where known.

Whatever the format, what looks like a credential is masked before a line is written:
bearer tokens and JWTs, webhook callback tokens, passwords in URLs.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Final

from foundation.log_context import current_work
from service.interceptors.request_id import RequestIdLogFilter
from tenancy.context import bound_tenant

FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"
MASK: Final = "***"
SECRETS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"whk1_[A-Za-z0-9_-]+"),  # a webhook callback token
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password in a URL
    re.compile(r"(?i)((?:secret|password|token)[\"']?\s*[=:]\s*[\"']?)[^\s\"',}]+"),
)


def redact(text: str) -> str:
    """`text` with anything that looks like a credential masked."""
    for pattern in SECRETS:
        text = pattern.sub(lambda match: (match.group(1) if match.groups() else "") + MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the tenant,
    execution and step the line is about where known; an exception as its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            line["request_id"] = request_id
        work = current_work()
        tenant = work.tenant if work is not None else bound_tenant()
        if tenant is not None:
            line["tenant"] = tenant
        if work is not None and work.execution_id is not None:
            line["execution_id"] = work.execution_id
        if work is not None and work.step_id is not None:
            line["step_id"] = work.step_id
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else RedactingFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
