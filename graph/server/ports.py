"""TCP port helpers for the provisioned server."""

from __future__ import annotations

import socket

from graphrec.errors import ProvisionError


def check_port_free(port: int, name: str, host: str = "127.0.0.1") -> None:
    """Check that ``host:port`` can be bound (same ``SO_REUSEADDR`` semantics as Neo4j's listener).

    Args:
        port: The TCP port.
        name: What the port is for (``"Bolt"``, ``"HTTP"``), used in the error.
        host: The interface the server listens on.

    Raises:
        ProvisionError: Something else listens on the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise ProvisionError(
            f"{name} port {port} on {host} is already in use ({e.strerror or e}): stop what uses it or pick another "
            f"port with --{name.lower()}-port / GRAPHREC_NEO4J_{name.upper()}_PORT"
        ) from e
    finally:
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
