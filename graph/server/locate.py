"""Where graphrec's Neo4j is: the server ``NEO4J_URI`` names, else the one ``graphrec neo4j start`` provisioned.

The API service and every CLI command resolve their connection here (the provisioned server's
address and password come from its state and password files).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrec.errors import Neo4jUnavailableError
from graphrec.settings import Settings, get_settings

if TYPE_CHECKING:
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
    from graph.server import server_from_settings

    settings = settings or get_settings()
    if settings.neo4j_uri:
        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
        return ConnectionInfo(uri=settings.neo4j_uri, user=settings.neo4j_user, password=password, database=settings.neo4j_database)
    info = server_from_settings(settings).connection_info()
    if info is None:
        raise Neo4jUnavailableError(NOT_RUNNING)
    return info


__all__ = ["NOT_RUNNING", "connection_info", "uses_external_server"]
