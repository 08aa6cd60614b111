"""Logging set-up: every line carries the request id of the call that wrote it."""

from __future__ import annotations

import logging

from service.interceptors.request_id import RequestIdLogFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
