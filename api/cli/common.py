"""How every CLI command finds Neo4j (the resolution itself is :mod:`graph.server.locate`).

``NEO4J_URI`` set: that server (``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``), nothing is
provisioned. Otherwise: the server ``graphrec neo4j start`` provisioned, read from its state file
and password file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from graph.server.locate import NOT_RUNNING, connection_info, uses_external_server
from graphrec.settings import Settings

if TYPE_CHECKING:
    from graph.connection import Driver

__all__ = ["NOT_RUNNING", "connection_info", "open_graph", "uses_external_server"]


@contextmanager
def open_graph(settings: Settings | None = None) -> Iterator[Driver]:
    """Yield a verified driver for :func:`connection_info`; closes it on exit.

    Raises:
        Neo4jUnavailableError: Neo4j is not running / not reachable.
        Neo4jAuthError: Neo4j rejected the credentials.
    """
    from graph.connection import open_driver

    info = connection_info(settings)
    driver = open_driver(info, verify=True)
    try:
        yield driver
    finally:
        driver.close()
