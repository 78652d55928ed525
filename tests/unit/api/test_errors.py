"""Error bodies, request ids, the OpenAPI error contract, the text-model states and admin auth (no Neo4j: a faked driver)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import neo4j
import pytest
from fastapi.testclient import TestClient
from neo4j import exceptions as neo4j_exc

from api.deps import GraphState
from api.main import create_app
from api.schemas import ErrorOut
from graph.connection import ConnectionInfo
from graphrec.errors import ConfigError
from graphrec.settings import Settings

TOKEN = "unit-test-admin-token-0123456789-abcdef"
ADDRESS = "bolt://10.1.2.3:7687"
MODEL = {"dataset": "toy", "version": "v1", "tag": "t1", "dim": 4, "max_norm": 1.0, "item_prop": "emb_t1", "checkpoint": "/models/x"}


def fake_driver() -> MagicMock:
    """A ``neo4j.Driver`` double (spec=): ``driver.rows`` answer reads, ``driver.error`` is raised by them."""
    driver = MagicMock(spec=neo4j.Driver)
    driver.rows, driver.error = [], None

    def run(query: str, params: Any = None) -> list[dict[str, Any]]:
        if driver.error is not None:
            raise driver.error
        return driver.rows(query) if callable(driver.rows) else driver.rows

    session = MagicMock()
    session.__enter__.return_value.run.side_effect = run
    driver.session.return_value = session
    driver.execute_query.side_effect = lambda query, params=None, **kw: (run(query, params), MagicMock(), [])
    return driver


def make_app(**overrides: Any) -> Any:
    settings = Settings(**{"admin_token": TOKEN, "dataset": "toy", "max_body_bytes": 2000, "preload_text_model": False, **overrides})
    return create_app(settings, ConnectionInfo(ADDRESS, "neo4j", "secret-password"), startup_wait_s=0)


@pytest.fixture
def client() -> Iterator[tuple[TestClient, MagicMock]]:
    app = make_app()
    driver = fake_driver()
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.graph._driver = driver
        yield c, driver


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    ErrorOut.model_validate(body)
    assert body["code"] == code and body["message"] == body["detail"]
    assert body["request_id"] and r.headers["X-Request-ID"] == body["request_id"]
    for secret in ("10.1.2.3", "7687", "bolt://", "secret-password", "Traceback", "ExclusiveLock", "Forseti"):
        assert secret not in r.text
    return body


def test_neo4j_down_503_has_request_id_and_no_address(client: tuple[TestClient, MagicMock], caplog: pytest.LogCaptureFixture) -> None:
    c, driver = client
    driver.error = neo4j_exc.ServiceUnavailable(f"Couldn't connect to {ADDRESS}")
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        r = c.get("/v1/users/u1/recommendations", headers={"X-Request-ID": "client-id-42"})
    body = assert_error(r, 503, "neo4j_unavailable")
    assert body["request_id"] == "client-id-42" and int(r.headers["Retry-After"]) > 0
    logged = [rec for rec in caplog.records if "client-id-42" in rec.getMessage()]
    assert logged and logged[0].exc_info is not None  # the cause, with its chain, is in the server log
    assert ADDRESS in logged[0].getMessage()  # ... and only there


def test_deadlock_is_a_retryable_503_without_lock_internals(client: tuple[TestClient, MagicMock]) -> None:
    c, driver = client
    driver.error = neo4j_exc.TransientError._hydrate_neo4j(
        code="Neo.TransientError.Transaction.DeadlockDetected",
        message="ForsetiClient[transactionId=7] can't acquire ExclusiveLock{owner=ForsetiClient[transactionId=6]} on NODE(12)")
    r = c.get("/v1/items/i1/similar")
    assert_error(r, 503, "database_busy")
    assert "Retry-After" in r.headers


def test_unexpected_exception_is_a_logged_500_without_its_text(client: tuple[TestClient, MagicMock], caplog: pytest.LogCaptureFixture) -> None:
    c, driver = client
    driver.error = RuntimeError(f"boom at {ADDRESS}")
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        r = c.get("/v1/users/u1/recommendations")
    body = assert_error(r, 500, "internal_error")
    assert any(body["request_id"] in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_client_errors_carry_codes_and_request_ids(client: tuple[TestClient, MagicMock]) -> None:
    c, _ = client
    body = assert_error(c.get("/v1/users/u1/recommendations?k=0"), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "k"]
    assert_error(c.post("/v1/interactions", content=b"not json", headers={"content-type": "application/json"}), 422, "validation_error")
    assert_error(c.post("/v1/interactions", content=b'"\x80"', headers={"content-type": "application/json"}), 400, "invalid_body")
    assert_error(c.post("/v1/interactions", content=b"{" + b" " * 3000 + b"}", headers={"content-type": "application/json"}),
                 413, "body_too_large")
    assert_error(c.get("/v1/no-such-route"), 404, "not_found")
    assert_error(c.post("/v1/admin/reload", json={}), 401, "unauthorized")
    assert_error(c.post("/v1/admin/reload", json={}, headers={"Authorization": "Bearer wrong"}), 403, "forbidden")
    bad_id = c.get("/v1/users/u1/recommendations?k=0", headers={"X-Request-ID": "no spaces allowed"})
    assert bad_id.json()["request_id"] != "no spaces allowed"  # an invalid client id is replaced


def test_unknown_user_is_404_with_its_message(client: tuple[TestClient, MagicMock]) -> None:
    c, driver = client
    driver.rows = []
    r = c.delete("/v1/admin/users/nobody", headers={"Authorization": f"Bearer {TOKEN}"})
    body = assert_error(r, 404, "unknown_user")
    assert "nobody" in body["message"]


def test_openapi_documents_the_error_bodies_of_every_operation(client: tuple[TestClient, MagicMock]) -> None:
    c, _ = client
    spec = c.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's default 422 body is never returned
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            for status in ("400", "413", "422", "503"):
                resp = op["responses"].get(status)
                assert resp is not None, (method, path, status)
                media = resp["content"]["application/json"]
                if path == "/v1/health" and status == "503":
                    continue  # health answers its own HealthOut
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
                assert media["example"]["code"], (method, path, status)


def test_production_refuses_a_weak_admin_token() -> None:
    for token in (None, "short", "a" * 40):
        with pytest.raises(ConfigError):
            with TestClient(make_app(environment="production", admin_token=token)):
                pass
    with TestClient(make_app(environment="production", admin_token=TOKEN)) as c:  # 32+ characters, 12+ distinct
        assert c.get("/metrics").status_code == 200


def test_admin_token_is_compared_in_constant_time(client: tuple[TestClient, MagicMock], monkeypatch: pytest.MonkeyPatch) -> None:
    import api.deps

    calls: list[tuple[bytes, bytes]] = []
    real = api.deps.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api.deps.hmac, "compare_digest", spy)
    c, driver = client
    driver.rows = []
    assert c.get("/v1/admin/jobs", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert c.get("/v1/admin/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert calls == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_default_bind_address_is_loopback() -> None:
    assert Settings().api_host == "127.0.0.1"


class SlowEncoder:
    """A text encoder whose load waits for ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loaded = False
        self.identity = "fake-encoder"

    def load(self) -> None:
        assert self.release.wait(30)
        self.weights = [[k] for k in range(5000)]  # objects that live as long as the process
        self.loaded = True

    def encode(self, texts: list[str]) -> Any:
        return [[0.0] * 4 for _ in texts]


def test_text_model_loads_in_the_background_and_503s_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SlowEncoder()
    cs = MagicMock()
    cs.encoder = encoder
    monkeypatch.setattr(GraphState, "coldstart", lambda self, tag, checkpoint: (setattr(self, "_coldstart", (tag, cs)) or cs))
    driver = fake_driver()
    driver.rows = lambda q: [{"m": MODEL}] if "ActiveModel" in q else []
    app = make_app(preload_text_model=True)
    monkeypatch.setattr(GraphState, "driver", property(lambda self: driver))
    with TestClient(app, raise_server_exceptions=False) as c:
        h = c.get("/v1/health").json()
        assert h["text_model"] == "loading"
        r = c.post("/v1/recommendations", json={"text": "a heist film", "k": 3})
        body = assert_error(r, 503, "text_model_loading")
        assert int(r.headers["Retry-After"]) > 0 and "loading" in body["message"]
        frozen = gc.get_freeze_count()
        encoder.release.set()
        app.state.graph._text_thread.join(10)
        h = c.get("/v1/health").json()
        assert h["text_model"] == "ready" and "fake-encoder" in h["text_model_detail"]
        assert gc.get_freeze_count() >= frozen + 5000  # the loaded model left the collector's reach too


def test_text_model_state_none_without_a_published_model(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = fake_driver()
    app = make_app(preload_text_model=True)
    monkeypatch.setattr(GraphState, "driver", property(lambda self: driver))
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.graph._text_thread.join(10)
        assert c.get("/v1/health").json()["text_model"] == "none"
