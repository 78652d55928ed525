"""Fixtures for tests against the REAL Neo4j.

- ``neo4j_info`` (session): :class:`graph.connection.ConnectionInfo`. With ``NEO4J_URI`` set, that
  server; otherwise a THROWAWAY server is provisioned for the session in a temporary home on free
  ports (reusing the jars in the shared jar cache) and stopped at the end. If it cannot start, every
  test that needs it ERRORS; nothing is skipped.
- ``neo4j_driver`` (session): a verified ``neo4j.Driver`` for ``neo4j_info``.
- ``clean_graph`` (function): empties the database (nodes and relationships; indexes and constraints
  stay) before the test and yields the driver.
- ``clean_database`` (function): like ``clean_graph`` and also drops every constraint and index.

Every test under ``tests/integration`` is marked ``integration`` automatically.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import neo4j

    from graph.connection import ConnectionInfo

_HERE = Path(__file__).parent.resolve()

# Batched delete; CALL { } IN TRANSACTIONS needs an auto-commit transaction (session.run), which
# execute_query does not give.
WIPE_QUERY = "MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
SHOW_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name RETURN name"
SHOW_INDEXES = "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``integration``."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _start_throwaway_server() -> tuple[object, ConnectionInfo, Path]:
    from graph.server import JarCache, Neo4jServer, default_jar_cache_dir, free_port
    from graphrec.errors import GraphrecError
    from graphrec.settings import Settings

    settings = Settings()
    jar_home = Path(os.environ.get("GRAPHREC_TEST_JAR_HOME") or settings.home)
    jars = JarCache(default_jar_cache_dir(jar_home, settings.neo4j_version), settings.neo4j_version)
    timeout = max(settings.neo4j_start_timeout_s, 300.0)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing it and binding it
        home = Path(tempfile.mkdtemp(prefix="graphrec-neo4j-test-"))
        server = Neo4jServer(
            home=home,
            version=settings.neo4j_version,
            jar_cache=jars,
            bolt_port=free_port(),
            http_port=free_port(),
            heap=settings.neo4j_heap,
            pagecache="256m",
            extra_conf={"db.tx_log.preallocate": "false"},
            die_with_parent=True,  # a killed pytest does not leave the server behind
        )
        atexit.register(server.stop)  # in case the session dies before the fixture's teardown
        try:
            return server, server.start(timeout=timeout), home
        except GraphrecError as e:
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
            last = e
            if "already in use" not in str(e):
                break
    pytest.fail(f"the throwaway Neo4j for the integration tests could not start: {last}", pytrace=False)
    raise AssertionError("unreachable")  # pytest.fail raises


@pytest.fixture(scope="session")
def neo4j_info() -> Iterator[ConnectionInfo]:
    """Connection info of the Neo4j the integration tests use (NEO4J_URI or a throwaway server)."""
    from graphrec.settings import Settings

    settings = Settings()
    if settings.neo4j_uri:
        from api.cli.common import connection_info

        yield connection_info(settings)
        return
    server, info, home = _start_throwaway_server()
    try:
        yield info
    finally:
        server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_info: ConnectionInfo) -> Iterator[neo4j.Driver]:
    """A verified driver for the session's Neo4j (closed at the end)."""
    from graph.connection import open_driver
    from graphrec.errors import GraphrecError

    try:
        driver = open_driver(neo4j_info, verify=True)
    except GraphrecError as e:
        pytest.fail(f"cannot connect to the Neo4j of the integration tests: {e}", pytrace=False)
    try:
        yield driver
    finally:
        driver.close()


def wipe_graph(driver: neo4j.Driver, database: str = "neo4j") -> None:
    """Delete every node and relationship, in batches."""
    with driver.session(database=database) as session:
        session.run(WIPE_QUERY).consume()


def drop_schema(driver: neo4j.Driver, database: str = "neo4j") -> None:
    """Drop every constraint and every index except the built-in token lookup indexes."""
    for record in driver.execute_query(SHOW_CONSTRAINTS, database_=database).records:
        driver.execute_query(f"DROP CONSTRAINT `{record['name']}` IF EXISTS", database_=database)
    for record in driver.execute_query(SHOW_INDEXES, database_=database).records:
        driver.execute_query(f"DROP INDEX `{record['name']}` IF EXISTS", database_=database)


@pytest.fixture
def clean_graph(neo4j_driver: neo4j.Driver, neo4j_info: ConnectionInfo) -> neo4j.Driver:
    """An empty graph (indexes and constraints kept) for one test; yields the driver."""
    wipe_graph(neo4j_driver, neo4j_info.database)
    return neo4j_driver


@pytest.fixture
def clean_database(neo4j_driver: neo4j.Driver, neo4j_info: ConnectionInfo) -> neo4j.Driver:
    """An empty graph with no constraints or indexes for one test; yields the driver."""
    wipe_graph(neo4j_driver, neo4j_info.database)
    drop_schema(neo4j_driver, neo4j_info.database)
    return neo4j_driver
