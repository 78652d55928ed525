"""Feedback write + incremental co-like upkeep, with a fake driver: which query runs when, with which
delta, in one transaction; errors. (Exactness against the real Neo4j: tests/integration/test_feedback_co_likes.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import exceptions as neo4j_exc

from graph import co_likes
from graph.feedback import Q_ITEM_EXISTS, Q_RECORD_INTERACTION, Interaction, record_interaction
from graphrec.errors import Neo4jUnavailableError, UnknownItemError, UnknownUserError


class FakeResult:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def single(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Any:
        return iter(self.rows)


class FakeTx:
    def __init__(self, answers: dict[str, list[dict[str, Any]]], log: list[tuple[str, dict[str, Any]]]) -> None:
        self.answers, self.log = answers, log

    def run(self, query: str, params: dict[str, Any]) -> FakeResult:
        self.log.append((query, params))
        return FakeResult(self.answers.get(query, []))


class FakeSession:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def execute_write(self, work: Any) -> Any:
        if self.driver.fail is not None:
            raise self.driver.fail
        self.driver.transactions += 1
        return work(FakeTx(self.driver.answers, self.driver.log))

    def run(self, query: str, params: dict[str, Any]) -> FakeResult:  # graph.connection.read
        self.driver.log.append((query, params))
        return FakeResult(self.driver.answers.get(query, []))


class FakeDriver:
    execute_query_bookmark_manager = object()

    def __init__(self, answers: dict[str, list[dict[str, Any]]], fail: BaseException | None = None) -> None:
        self.answers, self.fail = answers, fail
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.transactions = 0
        self.sessions: list[dict[str, Any]] = []

    def session(self, **kw: Any) -> FakeSession:
        self.sessions.append(kw)
        return FakeSession(self)


def _row(before: bool, after: bool, marker: bool = True, created: bool = False) -> dict[str, Any]:
    return {"created_user": False, "created_rel": created, "liked_before": before, "liked_after": after, "co_likes": marker}


UPKEEP = {"updated": 7, "reweighted": 42}


def _driver(row: dict[str, Any] | None) -> FakeDriver:
    return FakeDriver({Q_RECORD_INTERACTION: [{**row, "k": 0}] if row else [], co_likes.Q_FEEDBACK_LIKE_ADDED: [UPKEEP],
                       co_likes.Q_FEEDBACK_LIKE_REMOVED: [UPKEEP]})


@pytest.mark.parametrize(("before", "after", "query", "delta"), [
    (False, True, co_likes.Q_FEEDBACK_LIKE_ADDED, 1),
    (True, False, co_likes.Q_FEEDBACK_LIKE_REMOVED, -1),
])
def test_a_changed_like_status_updates_the_co_likes_in_the_same_transaction(before: bool, after: bool, query: str, delta: int) -> None:
    d = _driver(_row(before, after))
    res = record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=5.0 if after else 1.0), dataset="ds")  # type: ignore[arg-type]
    assert d.transactions == 1
    assert [q for q, _ in d.log] == [Q_RECORD_INTERACTION, query]
    params = d.log[1][1]
    assert params["delta"] == delta and params["user_id"] == "u1" and params["item_id"] == "i1" and params["dataset"] == "ds"
    assert res.liked_before is before and res.liked_after is after
    assert (res.co_likes_updated, res.co_likes_reweighted) == (7, 42)
    assert d.sessions[0]["bookmark_manager"] is FakeDriver.execute_query_bookmark_manager  # later reads see the write


@pytest.mark.parametrize(("before", "after"), [(True, True), (False, False)])
def test_same_side_of_the_threshold_writes_only(before: bool, after: bool) -> None:
    d = _driver(_row(before, after, created=True))
    res = record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=4.5), dataset="ds")  # type: ignore[arg-type]
    assert [q for q, _ in d.log] == [Q_RECORD_INTERACTION]
    assert res.created_relationship and res.co_likes_updated is None and res.co_likes_reweighted is None


def test_no_materialisation_writes_only() -> None:
    d = _driver(_row(False, True, marker=False))
    res = record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=None), dataset="ds")  # type: ignore[arg-type]
    assert [q for q, _ in d.log] == [Q_RECORD_INTERACTION] and res.liked_after and res.co_likes_updated is None


def test_upkeep_off_writes_only_and_says_so_to_the_query() -> None:
    d = _driver(_row(False, True))
    record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=5.0), dataset="ds", co_likes=False)  # type: ignore[arg-type]
    assert [q for q, _ in d.log] == [Q_RECORD_INTERACTION] and d.log[0][1]["rows"][0]["upkeep"] is False


@pytest.mark.parametrize(("check", "error"), [({"item_ok": False, "user_ok": True}, UnknownItemError),
                                              ({"item_ok": True, "user_ok": False}, UnknownUserError)])
def test_nothing_written_explains_why(check: dict[str, bool], error: type[Exception]) -> None:
    d = _driver(None)
    d.answers[Q_ITEM_EXISTS] = [check]
    with pytest.raises(error):
        record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=5.0), dataset="ds")  # type: ignore[arg-type]
    assert [q for q, _ in d.log] == [Q_RECORD_INTERACTION, Q_ITEM_EXISTS]


def test_neo4j_down_is_translated() -> None:
    d = FakeDriver({}, fail=neo4j_exc.ServiceUnavailable("gone"))
    with pytest.raises(Neo4jUnavailableError):
        record_interaction(d, Interaction(user_id="u1", item_id="i1", rating=5.0), dataset="ds")  # type: ignore[arg-type]


def test_refresh_takes_plus_or_minus_one_only() -> None:
    tx = FakeTx({}, [])
    with pytest.raises(ValueError):
        co_likes.refresh_co_likes(tx, "ds", "u", "i", delta=0)  # type: ignore[arg-type]
    assert co_likes.refresh_co_likes(tx, "ds", "u", "i", delta=1) is None  # type: ignore[arg-type]  # no marker: no row
    assert tx.log[0][1]["n_witnesses"] == co_likes.STORED_WITNESSES


def test_the_write_locks_before_it_reads_the_previous_rating() -> None:
    """The Dataset lock is the write's first step, before any other node is read or touched (one global
    lock order: feedback writes are serialised), so the like status before the write is read under it."""
    q = Q_RECORD_INTERACTION
    lines = [line.strip() for line in q.strip().splitlines()]
    # a label scan, not the unique-index seek an updating query makes a locking one (a shared lock
    # first, upgraded by the SET: the deadlock of concurrent writers)
    assert lines[:3] == ["MATCH (d:Dataset) USING SCAN d:Dataset WHERE d.name = $dataset",
                         "SET d.feedback_writes = coalesce(d.feedback_writes, 0)", "WITH d"]
    lock = q.index("SET d.feedback_writes")
    assert lock < q.index("OPTIONAL MATCH (existing)-[old:INTERACTED]->(i)") < q.index("MERGE (u)-[r:INTERACTED]->(i)")
    assert lock < q.index("MATCH (i:Item") < q.index("OPTIONAL MATCH (existing:User") < q.index("MERGE (u:User")
    # the upkeep finds the affected pairs with a hash join, not a 2-hop expansion per pair
    for upkeep in (co_likes.Q_FEEDBACK_LIKE_ADDED, co_likes.Q_FEEDBACK_LIKE_REMOVED):
        assert "USING JOIN ON j" in upkeep and "(i)-[c:CO_LIKED]-(j)" in upkeep
