"""How every CLI command finds Neo4j.

``NEO4J_URI`` set: that server (``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``), nothing is
provisioned. Otherwise: the server ``graphrec neo4j start`` provisioned, read from its state file
and password file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from graphrec.settings import Settings, get_settings
from graphrec.errors import Neo4jUnavailableError

if TYPE_CHECKING:
    import neo4j

    from graph.connection import ConnectionInfo

NOT_RUNNING = "Neo4j is not running: run `graphrec neo4j start` or set NEO4J_URI"


def uses_external_server(settings: Settings | None = None) -> bool:
    """Whether ``NEO4J_URI`` points at a server the project does not manage."""
    return bool((settings or get_settings()).neo4j_uri)


def connection_info(settings: Settings | None = None) -> ConnectionInfo:
    """Return how to reach Neo4j (``NEO4J_URI`` first, else the provisioned server).

    Raises:
        Neo4jUnavailableError: No ``NEO4J_URI`` and the provisioned server is not running.
    """
    from graph.connection import ConnectionInfo

    settings = settings or get_settings()
    if settings.neo4j_uri:
        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
        return ConnectionInfo(uri=settings.neo4j_uri, user=settings.neo4j_user, password=password, database=settings.neo4j_database)
    from graph.server import server_from_settings

    info = server_from_settings(settings).connection_info()
    if info is None:
        raise Neo4jUnavailableError(NOT_RUNNING)
    return info


@contextmanager
def open_graph(settings: Settings | None = None) -> Iterator[neo4j.Driver]:
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
