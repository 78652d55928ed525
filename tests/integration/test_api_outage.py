"""Neo4j goes away while the API serves: 503 with Retry-After; it comes back: answers again, same API process.

Needs a server it may stop, so it provisions its own throwaway Neo4j through ``graph.server``
(reusing the shared jar cache) instead of the session server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from graph.connection import open_driver
from graph.embeddings import publish
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graphrec.settings import Settings

DS = "toy-outage"


@pytest.fixture
def own_server() -> Iterator[tuple[Any, Any]]:
    from graph.server import JarCache, Neo4jServer, default_jar_cache_dir, free_port

    settings = Settings()
    jar_home = Path(os.environ.get("GRAPHREC_TEST_JAR_HOME") or settings.home)
    home = Path(tempfile.mkdtemp(prefix="graphrec-neo4j-outage-"))
    server = Neo4jServer(home=home, version=settings.neo4j_version,
                         jar_cache=JarCache(default_jar_cache_dir(jar_home, settings.neo4j_version), settings.neo4j_version),
                         bolt_port=free_port(), http_port=free_port(), heap="512m", pagecache="128m",
                         extra_conf={"db.tx_log.preallocate": "false"})
    try:
        info = server.start(timeout=max(settings.neo4j_start_timeout_s, 300.0))
    except Exception as e:  # noqa: BLE001
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"the outage test's own Neo4j could not start: {e}", pytrace=False)
    try:
        yield server, info
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_503_while_neo4j_is_down_and_recovery_without_restart(own_server: tuple[Any, Any]) -> None:
    server, info = own_server
    driver = open_driver(info)
    try:
        g = load_toy_graph(driver, DS, n_users=10, n_items=30, per_user=5, seed=2, database=info.database)
        publish(driver, random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=4, seed=1, version="outage-v1"),
                DS, database=info.database, grace_s=0)
    finally:
        driver.close()
    app = create_app(Settings(dataset=DS), info, startup_wait_s=10)
    with TestClient(app) as c:
        ok = c.get("/v1/users/u1/recommendations", params={"k": 3, "explain": "true"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 3
        server.stop()
        down = c.get("/v1/users/u1/recommendations", params={"k": 3}, headers={"X-Request-ID": "outage-probe-1"})
        assert down.status_code == 503
        assert int(down.headers["Retry-After"]) > 0
        body = down.json()  # a stable code and the request id; no address, port or driver text
        assert body["code"] == "neo4j_unavailable" and body["request_id"] == "outage-probe-1" == down.headers["X-Request-ID"]
        host_port = info.uri.split("//", 1)[1]
        for leak in (host_port, host_port.rsplit(":", 1)[1], "bolt", "ServiceUnavailable", "Traceback"):
            assert leak not in down.text
        h = c.get("/v1/health")
        assert h.status_code == 503 and h.json()["neo4j"] == "unreachable"
        assert host_port not in h.text and h.headers["X-Request-ID"]
        server.start(timeout=300)
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            status = c.get("/v1/users/u1/recommendations", params={"k": 3}).status_code
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200
        assert c.get("/v1/health").json()["model_version"] == "outage-v1"
