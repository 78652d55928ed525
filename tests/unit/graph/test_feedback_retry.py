"""Retries of the feedback write (graph.feedback.run_write / record_interaction) with driver fakes built
with ``spec=``: which errors are retried, how often, with which pauses, and what is raised at the end."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import neo4j
import pytest
from neo4j import exceptions as neo4j_exc

from graph.feedback import DEFAULT_RETRY, Interaction, RetryPolicy, dataset_gate, is_conflict, record_interaction, run_write
from graphrec.errors import Neo4jError, Neo4jUnavailableError, QueryError, WriteConflictError


def _server_error(code: str, message: str = "ForsetiClient[transactionId=7] can't acquire ExclusiveLock on NODE(0)") -> neo4j_exc.Neo4jError:
    return neo4j_exc.Neo4jError._hydrate_neo4j(code=code, message=message)


DEADLOCK = "Neo.TransientError.Transaction.DeadlockDetected"
ROW = {"created_user": False, "created_rel": True, "liked_before": False, "liked_after": True, "replayed": False, "co_likes": False}


def _driver(outcomes: list[Any]) -> tuple[MagicMock, MagicMock]:
    """A driver whose sessions' ``execute_write`` raises or returns ``outcomes`` in turn."""
    driver = MagicMock(spec=neo4j.Driver)
    session = MagicMock(spec=neo4j.Session)
    session.__enter__.return_value = session
    session.execute_write.side_effect = outcomes
    driver.session.return_value = session
    return driver, session


class Pauses:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_a_deadlock_left_over_by_the_driver_is_retried_with_jittered_pauses() -> None:
    driver, session = _driver([_server_error(DEADLOCK), _server_error(DEADLOCK), "done"])
    pauses = Pauses()
    policy = RetryPolicy(attempts=4, base_s=0.1, cap_s=1.0)
    assert run_write(driver, lambda tx: None, database="db", retry=policy, sleep=pauses) == "done"
    assert session.execute_write.call_count == 3
    assert len(pauses.calls) == 2
    assert 0.0 <= pauses.calls[0] <= 0.1 and 0.0 <= pauses.calls[1] <= 0.2  # full jitter under base * 2^(n-1)
    # every attempt is a managed transaction whose session gives the driver its own retry budget and
    # shares the execute_query bookmark manager (later reads see the write)
    for call in driver.session.call_args_list:
        assert call.kwargs["database"] == "db"
        assert call.kwargs["max_transaction_retry_time"] == policy.driver_retry_s
        assert call.kwargs["bookmark_manager"] is driver.execute_query_bookmark_manager


def test_giving_up_raises_write_conflict_without_driver_internals() -> None:
    driver, session = _driver([_server_error(DEADLOCK)] * 3)
    pauses = Pauses()
    with pytest.raises(WriteConflictError) as info:
        run_write(driver, lambda tx: None, database="db", retry=RetryPolicy(attempts=3), sleep=pauses, what="feedback write")
    assert session.execute_write.call_count == 3 and len(pauses.calls) == 2
    message = str(info.value)
    assert "Forseti" not in message and "NODE(" not in message and "Neo." not in message
    assert isinstance(info.value, Neo4jError) and info.value.http_status == 503
    assert isinstance(info.value.__cause__, neo4j_exc.TransientError)  # the cause is kept for the server log


def test_a_lock_wait_that_timed_out_counts_as_a_conflict() -> None:
    timed_out = _server_error("Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration", "timed out")
    driver, session = _driver([timed_out, "ok"])
    assert run_write(driver, lambda tx: None, database="db", retry=RetryPolicy(attempts=2), sleep=Pauses()) == "ok"
    assert session.execute_write.call_count == 2


@pytest.mark.parametrize(("error", "expected"), [
    (neo4j_exc.ServiceUnavailable("connection refused"), Neo4jUnavailableError),
    (neo4j_exc.Neo4jError._hydrate_neo4j(code="Neo.ClientError.Statement.SyntaxError", message="bad"), QueryError),
])
def test_other_errors_are_not_retried_here(error: Exception, expected: type[Exception]) -> None:
    driver, session = _driver([error, "never"])
    pauses = Pauses()
    with pytest.raises(expected):
        run_write(driver, lambda tx: None, database="db", retry=RetryPolicy(attempts=5), sleep=pauses)
    assert session.execute_write.call_count == 1 and pauses.calls == []


@pytest.mark.parametrize(("error", "conflict"), [
    (_server_error(DEADLOCK), True),
    (_server_error("Neo.TransientError.Transaction.LockAcquisitionTimeout"), True),
    (_server_error("Neo.TransientError.Transaction.LockClientStopped"), False),  # terminated on purpose: the driver says not retryable
    (_server_error("Neo.ClientError.Schema.ConstraintValidationFailed", "already exists"), False),
    (neo4j_exc.ServiceUnavailable("down"), False),
    (ValueError("x"), False),
])
def test_is_conflict(error: BaseException, conflict: bool) -> None:
    assert is_conflict(error) is conflict


def test_pauses_grow_and_are_capped() -> None:
    policy = RetryPolicy(base_s=0.02, cap_s=0.1)
    assert [policy.pause(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1])
    assert policy.pause(3, rng=lambda: 0.0) == 0.0


def test_record_interaction_retries_and_answers_the_write() -> None:
    driver, session = _driver([_server_error(DEADLOCK), (ROW, None)])
    pauses = Pauses()
    res = record_interaction(driver, Interaction(user_id="u", item_id="i", rating=5.0, ts=3), dataset="ds", sleep=pauses)
    assert res.created_relationship and res.liked_after and not res.replayed
    assert session.execute_write.call_count == 2 and len(pauses.calls) == 1
    # the unit of work carries a server-side timeout, so a stuck transaction cannot hold the dataset lock
    work = session.execute_write.call_args.args[0]
    assert work.timeout == DEFAULT_RETRY.tx_timeout_s


def test_record_interaction_gives_up_with_write_conflict() -> None:
    driver, session = _driver([_server_error(DEADLOCK)] * DEFAULT_RETRY.attempts)
    with pytest.raises(WriteConflictError):
        record_interaction(driver, Interaction(user_id="u", item_id="i", rating=5.0), dataset="ds", sleep=Pauses())
    assert session.execute_write.call_count == DEFAULT_RETRY.attempts
    assert not dataset_gate("neo4j", "ds").locked()  # the gate is released on failure


def test_one_gate_per_dataset() -> None:
    assert dataset_gate("neo4j", "a") is dataset_gate("neo4j", "a")
    assert dataset_gate("neo4j", "a") is not dataset_gate("neo4j", "b")
    assert dataset_gate("neo4j", "a") is not dataset_gate("other", "a")
