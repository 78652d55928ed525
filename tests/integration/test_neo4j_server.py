"""The session's Neo4j answers, serves the Browser, and the clean_graph fixture empties it."""

from __future__ import annotations

import urllib.request

import neo4j

from graph.connection import ConnectionInfo, read, write


def test_server_answers_return_1(neo4j_driver: neo4j.Driver, neo4j_info: ConnectionInfo) -> None:
    records = read(neo4j_driver, "RETURN 1 AS ok", database=neo4j_info.database)
    assert records[0]["ok"] == 1


def test_browser_is_served(neo4j_info: ConnectionInfo) -> None:
    if neo4j_info.browser_url is None:  # an external server given by NEO4J_URI: no Browser URL known
        return
    with urllib.request.urlopen(neo4j_info.browser_url, timeout=10) as resp:  # noqa: S310
        body = resp.read().decode("utf-8", "replace")
    assert resp.status == 200
    assert "<html" in body.lower()


def test_clean_graph_empties_the_database(neo4j_driver: neo4j.Driver, neo4j_info: ConnectionInfo, request) -> None:
    write(neo4j_driver, "UNWIND range(1, 25) AS i CREATE (:Scratch {i: i})-[:NEXT]->(:Scratch {i: -i})", database=neo4j_info.database)
    assert read(neo4j_driver, "MATCH (n:Scratch) RETURN count(n) AS c", database=neo4j_info.database)[0]["c"] == 50
    driver = request.getfixturevalue("clean_graph")
    assert read(driver, "MATCH (n) RETURN count(n) AS c", database=neo4j_info.database)[0]["c"] == 0
    assert read(driver, "MATCH ()-[r]->() RETURN count(r) AS c", database=neo4j_info.database)[0]["c"] == 0
