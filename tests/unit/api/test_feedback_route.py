"""``POST /v1/interactions`` with a faked driver (spec=): a write that keeps conflicting is retried and then
answers 503 ``write_conflict`` with ``Retry-After`` and no database internals; a replay answers 201 ``replayed``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import neo4j
import pytest
from fastapi.testclient import TestClient
from neo4j import exceptions as neo4j_exc

from api.main import create_app
from graph.connection import ConnectionInfo
from graph.feedback import DEFAULT_RETRY
from graphrec.settings import Settings

DEADLOCK = neo4j_exc.Neo4jError._hydrate_neo4j(
    code="Neo.TransientError.Transaction.DeadlockDetected",
    message="ForsetiClient[transactionId=7] can't acquire ExclusiveLock{owner=ForsetiClient[transactionId=6]} on NODE(0)")


@pytest.fixture
def api() -> Iterator[tuple[TestClient, MagicMock]]:
    settings = Settings(dataset="toy", preload_text_model=False, admin_token="unit-test-admin-token-0123456789-abcdef")
    app = create_app(settings, ConnectionInfo("bolt://127.0.0.1:7687", "neo4j", "secret-password"), startup_wait_s=0)
    driver = MagicMock(spec=neo4j.Driver)
    session = MagicMock(spec=neo4j.Session)
    session.__enter__.return_value = session
    driver.session.return_value = session
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.graph._driver = driver
        yield c, session


def test_a_write_that_keeps_conflicting_answers_503_write_conflict(api: tuple[TestClient, MagicMock]) -> None:
    c, session = api
    session.execute_write.side_effect = DEADLOCK
    r = c.post("/v1/interactions", json={"user_id": "u1", "item_id": "i1", "rating": 4.5, "ts": 10})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "write_conflict" and "send it again" in body["message"]
    assert int(r.headers["Retry-After"]) > 0 and body["request_id"] == r.headers["X-Request-ID"]
    for internal in ("Forseti", "ExclusiveLock", "NODE(", "Neo.TransientError", "7687"):
        assert internal not in r.text
    assert session.execute_write.call_count == DEFAULT_RETRY.attempts  # retried before giving up


def test_a_conflict_that_clears_answers_201(api: tuple[TestClient, MagicMock]) -> None:
    c, session = api
    row = {"created_user": False, "created_rel": True, "liked_before": False, "liked_after": True, "replayed": False,
           "outdated": False, "co_likes": False}
    session.execute_write.side_effect = [DEADLOCK, [(row, None)]]
    r = c.post("/v1/interactions", json={"user_id": "u1", "item_id": "i1", "rating": 4.5, "ts": 10})
    assert r.status_code == 201, r.text
    assert r.json()["created_relationship"] is True and session.execute_write.call_count == 2


@pytest.mark.parametrize("flag", ["replayed", "outdated"])
def test_a_request_that_writes_nothing_says_why(api: tuple[TestClient, MagicMock], flag: str) -> None:
    c, session = api
    row: dict[str, Any] = {"created_user": False, "created_rel": False, "liked_before": True, "liked_after": True, "replayed": False,
                           "outdated": False, "co_likes": True, flag: True}
    session.execute_write.return_value = [(row, None)]
    r = c.post("/v1/interactions", json={"user_id": "u1", "item_id": "i1", "rating": 4.5, "ts": 10})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body[flag] is True and body["created_relationship"] is False
