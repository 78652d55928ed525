"""Driver creation and the two query helpers every module of ``graph/`` goes through.

The caller owns the driver (create it with :func:`open_driver`, close it when done).
:func:`read` runs an auto-commit read and :func:`write` calls ``driver.execute_query``, both with the
database and routing set, and both translate driver exceptions into :mod:`graphrec.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import neo4j
from neo4j import GraphDatabase, NotificationDisabledClassification, RoutingControl
from neo4j import exceptions as neo4j_exc

from graphrec.errors import Neo4jAuthError, Neo4jUnavailableError, QueryError

Driver = neo4j.Driver
"""The driver type, for type hints in packages that hold a driver but never import ``neo4j`` (api)."""


@dataclass(frozen=True)
class ConnectionInfo:
    """How to reach a Neo4j server."""

    uri: str
    user: str
    password: str
    database: str = "neo4j"
    browser_url: str | None = None


def open_driver(info: ConnectionInfo, verify: bool = True, **options: Any) -> neo4j.Driver:
    """Create a driver for ``info`` and (optionally) check that the server answers.

    ``options`` override the driver configuration (for example the API uses short timeouts and
    no transaction retries, so requests fail fast with 503 while Neo4j is down). Notifications of
    the ``UNRECOGNIZED`` class ("property key does not exist") are off: the queries are written for
    every dataset and read optional properties on purpose (``r.rating`` on check-in data, say),
    and the driver would log each one as a warning.

    Raises:
        Neo4jAuthError: The server rejected the credentials.
        Neo4jUnavailableError: The server does not answer.
    """
    try:
        driver = GraphDatabase.driver(
            info.uri,
            auth=(info.user, info.password),
            **{
                "connection_acquisition_timeout": 10.0,
                "connection_timeout": 5.0,
                "max_transaction_retry_time": 5.0,
                "notifications_disabled_classifications": [NotificationDisabledClassification.UNRECOGNIZED],
                **options,
            },
        )
    except (ValueError, neo4j_exc.ConfigurationError) as e:
        raise Neo4jUnavailableError(f"invalid Neo4j URI {info.uri!r}: {e}") from e
    if verify:
        try:
            driver.verify_connectivity()
        except BaseException as e:
            driver.close()
            raise translate_error(e, info.uri) from e
    return driver


def translate_error(e: BaseException, where: str = "Neo4j") -> Exception:
    """Map a driver exception to a graphrec error (returned, for ``raise ... from e``)."""
    if isinstance(e, neo4j_exc.AuthError):
        return Neo4jAuthError(f"Neo4j at {where} rejected the user name or password")
    if isinstance(e, (neo4j_exc.ServiceUnavailable, neo4j_exc.SessionExpired, OSError)):
        return Neo4jUnavailableError(f"Neo4j at {where} is not reachable: {e}")
    if isinstance(e, neo4j_exc.Neo4jError):
        return QueryError(f"Neo4j query failed: {e.code}: {e.message}")
    if isinstance(e, neo4j_exc.DriverError):
        return Neo4jUnavailableError(f"Neo4j driver error: {e}")
    return e if isinstance(e, Exception) else RuntimeError(str(e))


def out_of_transaction_memory(e: BaseException) -> bool:
    """Whether ``e`` (a driver error, or a graphrec error raised from one) says the server's transaction
    memory ran out (``dbms.memory.transaction.total.max``, shared by every running transaction): the
    same work split into smaller transactions may pass."""
    cause = e.__cause__ if e.__cause__ is not None else e
    return "MemoryPool" in f"{getattr(cause, 'code', '')} {e}"


def read(driver: neo4j.Driver, query: str, parameters: Mapping[str, Any] | None = None, database: str = "neo4j") -> list[neo4j.Record]:
    """Run a read query (routed to readers) as an auto-commit transaction and return its records.

    One round trip (``RUN`` + ``PULL``), where a transaction function takes two (``BEGIN`` + ``RUN`` +
    ``PULL``, then ``COMMIT``): about 0.5 ms of Neo4j CPU and 0.3 ms of client CPU less per query,
    which is what serving is made of. The session shares the driver's ``execute_query`` bookmark
    manager, so a read still sees every write :func:`write` committed before it (also on a cluster).
    A read is not retried; the API maps a failure to 503 with Retry-After.
    """
    try:
        with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS,
                            bookmark_manager=driver.execute_query_bookmark_manager) as session:
            return list(session.run(query, parameters or {}))
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e


def write(driver: neo4j.Driver, query: str, parameters: Mapping[str, Any] | None = None, database: str = "neo4j") -> neo4j.ResultSummary:
    """Run a write query in its own transaction and return the summary (counters)."""
    try:
        _, summary, _ = driver.execute_query(query, parameters or {}, database_=database, routing_=RoutingControl.WRITE)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e
    return summary


PING = "RETURN 1 AS ok"


def ping(driver: neo4j.Driver, database: str = "neo4j") -> None:
    """Check that the server answers a trivial query (raises the translated driver error when it does not)."""
    read(driver, PING, {}, database)
