"""Telling a database that cannot be reached now from a statement that went wrong.

A server going away, restarting or full is an outage: the caller may try again shortly
and nothing it did was wrong. The service answers UNAVAILABLE for it; the engine retries
what it was recording instead of dropping it.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

OUTAGE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "53300", "53000"})
"""SQLSTATEs of a server going away or full (admin shutdown, crash shutdown, cannot connect
now, too many connections); class 08 (connection exceptions) counts too."""


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (down, restarting, full),
    rather than that the statement did something wrong.

    Matched on SQLSTATE, not on the driver's class: serialization failures and deadlocks
    are OperationalErrors too, and they are not outages."""
    if isinstance(error, DisconnectionError | PoolTimeout | InterfaceError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    state = getattr(original, "sqlstate", None)
    if isinstance(state, str):
        return state.startswith("08") or state in OUTAGE_STATES
    # psycopg reports a refused or failed connection attempt with no SQLSTATE.
    return type(original).__module__.startswith("psycopg") and isinstance(error, OperationalError)
