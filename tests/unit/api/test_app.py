"""API behaviour that needs no Neo4j: error mapping, auth, body limits, validation, metrics, jobs (fake driver)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from neo4j import exceptions as neo4j_exc

from api.jobs import JobRunner, check_args
from api.main import create_app
from graph.connection import ConnectionInfo
from graphrec.errors import InvalidArgumentError, NotFoundError
from graphrec.settings import Settings

TOKEN = "unit-test-admin-token-0123456789"


class FakeDriver:
    """Answers every query with ``error`` (or ``records``)."""

    def __init__(self, error: Exception | None = None, records: list[dict[str, Any]] | None = None) -> None:
        self.error = error
        self.records = records or []
        self.queries: list[str] = []

    execute_query_bookmark_manager = None

    def execute_query(self, query: str, params: Any = None, **kwargs: Any) -> tuple[list[dict[str, Any]], Any, Any]:
        self.queries.append(query)
        if self.error is not None:
            raise self.error
        return self.records, None, None

    def session(self, **kwargs: Any) -> FakeSession:
        return FakeSession(self)

    def close(self) -> None:
        pass


class FakeSession:
    """What graph.connection.read uses: an auto-commit ``run`` in a context-managed session."""

    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def run(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        return self.driver.execute_query(query, params)[0]


@pytest.fixture
def client() -> Iterator[tuple[TestClient, FakeDriver]]:
    settings = Settings(admin_token=TOKEN, max_body_bytes=2000, dataset="toy", preload_text_model=False)
    app = create_app(settings, ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"), startup_wait_s=0)
    fake = FakeDriver(error=neo4j_exc.ServiceUnavailable("connection refused"))
    with TestClient(app) as c:
        app.state.graph._driver = fake
        yield c, fake


def test_neo4j_down_gives_503_with_retry_after(client: tuple[TestClient, FakeDriver]) -> None:
    c, _ = client
    r = c.get("/v1/users/1/recommendations")
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) > 0
    assert "not reachable" in r.json()["detail"]
    h = c.get("/v1/health")
    assert h.status_code == 503 and h.json()["neo4j"] == "unreachable" and "Retry-After" in h.headers


def test_recovers_when_driver_answers_again(client: tuple[TestClient, FakeDriver]) -> None:
    c, fake = client
    assert c.get("/v1/health").status_code == 503
    fake.error = None
    fake.records = [{"m": None}]
    r = c.get("/v1/health")
    assert r.status_code == 200 and r.json()["neo4j"] == "ok" and r.json()["model_version"] is None


@pytest.mark.parametrize("url", [
    "/v1/users/1/recommendations?k=0", "/v1/users/1/recommendations?k=101", "/v1/users/1/recommendations?k=abc",
    "/v1/users/1/recommendations?diversity=2", "/v1/items/1/similar?k=-1",
])
def test_invalid_query_parameters_are_422(client: tuple[TestClient, FakeDriver], url: str) -> None:
    c, fake = client
    assert c.get(url).status_code == 422
    assert fake.queries == []  # nothing reached Neo4j


@pytest.mark.parametrize("body", [{}, {"liked_item_ids": [], "text": "  "}, {"text": "x", "k": 0}, {"text": "x", "colour": 1},
                                  {"liked_item_ids": ["i1"], "year_min": 2000, "year_max": 1990.0}])
def test_invalid_cold_start_bodies_are_422(client: tuple[TestClient, FakeDriver], body: dict[str, Any]) -> None:
    c, _ = client
    assert c.post("/v1/recommendations", json=body).status_code == 422


def test_oversized_body_is_413(client: tuple[TestClient, FakeDriver]) -> None:
    c, fake = client
    r = c.post("/v1/interactions", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert fake.queries == []


def test_oversized_streamed_body_is_413(client: tuple[TestClient, FakeDriver]) -> None:
    c, _ = client

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    r = c.post("/v1/interactions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("path,body", [("/v1/admin/reload", {}), ("/v1/admin/train", {})])
def test_admin_requires_token(client: tuple[TestClient, FakeDriver], path: str, body: dict[str, Any]) -> None:
    c, fake = client
    assert c.post(path, json=body).status_code == 401
    assert c.post(path, json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert c.get("/v1/admin/jobs/x").status_code == 401
    assert c.get("/v1/admin/jobs").status_code == 401
    assert c.delete("/v1/admin/users/u1").status_code == 401
    assert c.delete("/v1/admin/users/u1", headers={"Authorization": "Bearer nope"}).status_code == 403
    fake.error, fake.records = None, []  # the job store (Neo4j) knows no such job
    r = c.get("/v1/admin/jobs/unknown", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_admin_disabled_without_configured_token() -> None:
    app = create_app(Settings(admin_token=None, dataset="toy"), ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"), startup_wait_s=0)
    with TestClient(app) as c:
        assert c.post("/v1/admin/reload", json={}, headers={"Authorization": "Bearer anything"}).status_code == 403


def test_metrics_and_openapi(client: tuple[TestClient, FakeDriver]) -> None:
    c, _ = client
    c.get("/v1/health")
    m = c.get("/metrics")
    assert m.status_code == 200 and "graphrec_http_requests_total" in m.text
    spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/similar", "/v1/recommendations", "/v1/interactions",
              "/v1/admin/reload", "/v1/admin/train", "/v1/admin/jobs/{job_id}", "/v1/health",
              "/v1/users/{user_id}/recommendations/{item_id}/explanation.png"):
        assert p in paths, p
    assert c.get("/docs").status_code == 200


def test_production_refuses_default_secret() -> None:
    from graphrec.errors import ConfigError

    app = create_app(Settings(environment="production", admin_token=None), ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"), startup_wait_s=0)
    with pytest.raises(ConfigError):
        with TestClient(app):
            pass


def test_job_runner_runs_cli_subprocess_and_reports_failure() -> None:
    runner = JobRunner()
    ok = runner.submit("reload", [["--help"]])
    bad = runner.submit("train", [["no-such-command"], ["--help"]])
    assert runner.wait(ok.id, 120).state == "succeeded"
    done = runner.wait(bad.id, 120)
    assert done.state == "failed" and done.returncode != 0
    assert done.commands == [["graphrec", "no-such-command"]]  # stopped at the failing step
    assert any("graphrec" in line for line in runner.get(ok.id).messages)
    assert runner.get(ok.id).progress == 1.0 and done.progress == 0.0 and done.error
    assert [j.id for j in runner.list()] == [bad.id, ok.id] or {j.id for j in runner.list()} == {ok.id, bad.id}
    with pytest.raises(NotFoundError):
        runner.get("missing")
    runner.shutdown()


def test_job_arguments_are_checked() -> None:
    assert check_args(["--epochs", "3"]) == ["--epochs", "3"]
    with pytest.raises(InvalidArgumentError):
        check_args(["--x", "a; rm -rf /"])
