"""Server interceptors for request ids and error translation (identity lives in `tenancy`)."""

from foundation.hooks import HookInterceptor
from service.interceptors.errors import ErrorInterceptor
from service.interceptors.request_id import RequestIdInterceptor, current_request_id

__all__ = ["ErrorInterceptor", "HookInterceptor", "RequestIdInterceptor", "current_request_id"]
