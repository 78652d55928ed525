"""Provisioning of a local Neo4j 5.26 LTS Community server assembled from Maven Central jars.

The jars are fetched once per version into a shared *jar cache* (``<GRAPHREC_HOME>/jars/<version>``)
with a generated pom and ``mvn dependency:copy-dependencies``; every server *home* (the user's
server under ``settings.neo4j_home`` and throwaway test servers in temporary folders) points its
class path at that cache, so nothing is downloaded twice.

Public API:
    :class:`Neo4jServer` with ``start(timeout) -> ConnectionInfo``, ``stop()``, ``status()`` and
    ``connection_info() -> ConnectionInfo | None``; :func:`server_from_settings`;
    :mod:`graph.server.locate` (which server to use: ``NEO4J_URI`` or this one);
    :mod:`graph.server.browser` (the Neo4j Browser style a provisioned server applies).

Tooling, not data access. It sits under ``graph`` because it is the Neo4j side of the project and
reaches the server only through :mod:`graph.connection` (it never imports ``neo4j`` itself), but no
module of ``graph`` that reads or writes the graph may import it: an import-linter contract in
``pyproject.toml`` forbids ``graph.*`` -> ``graph.server``, so data access works the same against any
Neo4j (``NEO4J_URI``), provisioned or not. Only the CLI, the API's connection lookup and the tests use it.
"""

from __future__ import annotations

from graph.server.jars import JarCache, default_jar_cache_dir
from graph.server.ports import check_port_free, free_port
from graph.server.server import Neo4jServer, ServerStatus, server_from_settings
from graph.server.tools import check_java, check_maven, parse_java_version

__all__ = [
    "JarCache",
    "Neo4jServer",
    "ServerStatus",
    "check_java",
    "check_maven",
    "check_port_free",
    "default_jar_cache_dir",
    "free_port",
    "parse_java_version",
    "server_from_settings",
]
