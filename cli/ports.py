"""Whether the address a server would listen on is free, asked before any start-up work."""

from __future__ import annotations

import errno
import socket
from typing import NoReturn

import typer

REFUSED = 2  # as every start-up refusal


def split(address: str) -> tuple[str, int] | None:
    """`host:port` (or `[v6]:port`) as its parts; None when the port is not a number."""
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def in_use(host: str, port: int) -> bool:
    """True when something already listens on `port` at `host` (port 0 never is)."""
    if port == 0:
        return False
    try:
        places = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False  # the server's own bind reports a bad host
    for family, kind, protocol, _, place in places:
        with socket.socket(family, kind, protocol) as probe:
            # As gRPC binds: a port that only has connections in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(place)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
    return False


def refuse_if_in_use(
    address: str, *, flag: str = "--address", variable: str = "WFE_LISTEN_ADDRESS"
) -> None:
    """Stop with one line naming the port and how to choose another, if it is taken.

    `flag` and `variable` are how the command chooses this address (the gateway's differ).
    """
    parts = split(address)
    if parts is None or not in_use(*parts):
        return
    refuse(address, "is already in use", flag=flag, variable=variable)


def refuse(
    address: str,
    problem: str,
    *,
    flag: str = "--address",
    variable: str = "WFE_LISTEN_ADDRESS",
) -> NoReturn:
    """Print why the server cannot listen on `address`, with an alternative, and exit."""
    host, port = split(address) or (address, 0)
    nearby = range(port + 1, min(port + 100, 65536))
    free = next((p for p in nearby if not in_use(host, p)), 0)  # 0: any free port
    other = f"{'[' + host + ']' if ':' in host else host}:{free}"
    typer.echo(
        f"port {port} on {host or 'all interfaces'} {problem}; listen elsewhere with "
        f"{flag} {other} or {variable}={other}",
        err=True,
    )
    raise typer.Exit(REFUSED)
