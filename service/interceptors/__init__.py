"""Server interceptors: request ids, errors, undecodable requests (identity is in `tenancy`)."""

from foundation.hooks import HookInterceptor
from service.interceptors.decoding import DecodeGuardInterceptor
from service.interceptors.errors import ErrorInterceptor, details_budget
from service.interceptors.request_id import RequestIdInterceptor, current_request_id

__all__ = [
    "DecodeGuardInterceptor",
    "ErrorInterceptor",
    "HookInterceptor",
    "RequestIdInterceptor",
    "current_request_id",
    "details_budget",
]
