"""The shell lines that point `wfe` client commands at a server, as a tenant."""

from __future__ import annotations

import shlex

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def client_address(listen_address: str, port: int | None = None) -> str:
    """Where a client on this machine reaches a server bound to `listen_address`.

    A wildcard host becomes loopback; `port` (the one bound) replaces a requested 0.
    """
    host, _, requested = listen_address.rpartition(":")
    return f"{WILDCARDS.get(host, host)}:{requested if port is None else port}"


def export_line(address: str, tenant: str, token: str) -> str:
    """One `export` of the variables the client commands read."""
    values = {"WFE_ADDRESS": address, "WFE_TENANT": tenant, "WFE_TOKEN": token}
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in values.items())
