"""Retries of the feedback write (graph.feedback.run_write / record_interaction) with driver fakes built
with ``spec=``: which errors are retried, how often, with which pauses, and what is raised at the end."""

from __future__ import annotations

import threading
import time
from typing import Any
from unittest.mock import MagicMock

import neo4j
import pytest
from neo4j import exceptions as neo4j_exc

from graph.feedback import (
    DEFAULT_RETRY,
    Q_RECORD_INTERACTION,
    ROWS_PER_STATEMENT,
    Interaction,
    RetryPolicy,
    WriteQueue,
    _Pending,
    _rounds,
    is_conflict,
    record_interaction,
    run_write,
    write_queue,
)
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
    driver, session = _driver([_server_error(DEADLOCK), [(ROW, None)]])  # one batch, one write
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
    assert not write_queue("neo4j", "ds")._leading and not write_queue("neo4j", "ds")._pending  # nothing left behind


def test_one_queue_per_dataset() -> None:
    assert write_queue("neo4j", "a") is write_queue("neo4j", "a")
    assert write_queue("neo4j", "a") is not write_queue("neo4j", "b")
    assert write_queue("neo4j", "a") is not write_queue("other", "a")


def _params(user: str, item: str | None = None) -> dict[str, Any]:
    return {"dataset": "ds", "user_id": user, "item_id": item or f"i-{user}", "rating": 5.0, "ts": 1, "create_user": False, "like": 4.0, "upkeep": True}


def _tx_driver(bad_user: str | None = None, seconds: float = 0.0) -> tuple[MagicMock, MagicMock, list[list[str]]]:
    """A driver whose transactions answer every feedback statement with a row per row sent (or fail on
    ``bad_user``); ``transactions`` lists the users of every transaction's statements, in order."""
    driver, session = _driver([])
    transactions: list[list[str]] = []
    statements: list[list[str]] = []

    def execute_write(work: Any) -> Any:
        users: list[str] = []
        transactions.append(users)
        tx = MagicMock(spec=neo4j.ManagedTransaction)

        def run(query: str, params: dict[str, Any]) -> Any:
            assert query == Q_RECORD_INTERACTION and len(params["rows"]) <= ROWS_PER_STATEMENT
            sent = [r["user_id"] for r in params["rows"]]
            users.extend(sent)
            statements.append(sent)
            if bad_user in sent:
                raise neo4j_exc.Neo4jError._hydrate_neo4j(code="Neo.ClientError.Statement.ArgumentError", message="bad value")
            if seconds:
                time.sleep(seconds)
            return iter([{**ROW, "k": r["k"], "user": r["user_id"]} for r in params["rows"]])

        tx.run.side_effect = run
        return work(tx)

    session.execute_write.side_effect = execute_write
    driver.statements = statements
    return driver, session, transactions


def test_writes_waiting_together_share_one_transaction_and_one_statement() -> None:
    driver, session, transactions = _tx_driver()
    queue = WriteQueue(max_batch=64)
    waiting = [_Pending(params=_params(f"u{k}")) for k in range(3)]
    queue._pending.extend(waiting)  # three writes queued while another batch was running
    mine = _Pending(params=_params("me"))
    row, changed = queue.submit(driver, mine, database="db", sleep=Pauses())
    assert row["user"] == "me" and changed is None
    assert transactions == [["u0", "u1", "u2", "me"]]  # one transaction, in arrival order: one lock, one commit
    assert driver.statements == [["u0", "u1", "u2", "me"]]  # and one UNWIND statement: one round trip
    assert all(p.done.is_set() and p.result[0]["user"] == p.params["user_id"] for p in waiting)
    assert not queue._leading and not queue._pending


def test_batches_are_bounded_and_the_lead_goes_to_the_oldest_write_waiting() -> None:
    driver, session, transactions = _tx_driver()
    queue = WriteQueue(max_batch=2)
    pending = [_Pending(params=_params(f"u{k}")) for k in range(4)]
    queue._pending.extend(pending)
    queue._leading = True  # the writer of u0 leads
    queue._lead(driver, "db", DEFAULT_RETRY, Pauses())
    assert transactions == [["u0", "u1"]]
    assert pending[0].wake.is_set() and pending[1].wake.is_set() and pending[0].done.is_set()
    assert pending[2].wake.is_set() and not pending[2].done.is_set()  # handed the lead: the next batch starts at once
    assert not pending[3].wake.is_set() and queue._leading
    queue._lead(driver, "db", DEFAULT_RETRY, Pauses())
    assert transactions == [["u0", "u1"], ["u2", "u3"]] and not queue._leading


def test_a_users_writes_in_one_batch_go_to_successive_statements_in_order() -> None:
    batch = [_params(u) for u in ("a", "b", "a", "c", "a", "b")]
    assert _rounds(batch) == [[0, 1, 3], [2, 5], [4]]
    # writes of different users on one item keep their order too (their co-like upkeep reads the item's liker count)
    assert _rounds([_params("a", "x"), _params("b", "x"), _params("c", "y"), _params("a", "z")]) == [[0, 2], [1, 3]]
    driver, session, transactions = _tx_driver()
    queue = WriteQueue()
    queue._pending.extend(_Pending(params=p) for p in batch[:-1])
    queue.submit(driver, _Pending(params=batch[-1]), database="db", sleep=Pauses())
    assert transactions == [["a", "b", "c", "a", "b", "a"]]
    assert driver.statements == [["a", "b", "c"], ["a", "b"], ["a"]]


def test_a_round_is_sent_in_fixed_size_chunks() -> None:
    driver, session, transactions = _tx_driver()
    queue = WriteQueue(max_batch=1000)
    n = 2 * ROWS_PER_STATEMENT + 3
    queue._pending.extend(_Pending(params=_params(f"u{k}")) for k in range(n - 1))
    queue.submit(driver, _Pending(params=_params("me")), database="db", sleep=Pauses())
    assert [len(s) for s in driver.statements] == [ROWS_PER_STATEMENT, ROWS_PER_STATEMENT, 3] and len(transactions) == 1


def test_concurrent_writers_each_get_their_own_answer_and_share_transactions() -> None:
    driver, session, transactions = _tx_driver(seconds=0.01)
    queue = WriteQueue()
    answers: dict[str, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def writer(w: int) -> None:
        try:
            barrier.wait(timeout=10)
            for k in range(10):
                user = f"w{w}-{k}"
                answers[user] = queue.submit(driver, _Pending(params=_params(user)), database="db", sleep=Pauses())[0]["user"]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(answers) == 160 and all(u == a for u, a in answers.items())
    assert sorted(u for tx in transactions for u in tx) == sorted(answers)  # every write applied exactly once
    assert len(transactions) < 160  # writes that waited together shared a transaction
    assert not queue._leading and not queue._pending


def test_a_failing_batch_is_retried_one_by_one_and_the_error_stays_with_its_write() -> None:
    driver, session, transactions = _tx_driver(bad_user="bad")
    queue = WriteQueue()
    good, bad = _Pending(params=_params("good")), _Pending(params=_params("bad"))
    queue._pending.extend([good, bad])
    mine = _Pending(params=_params("me"))
    assert queue.submit(driver, mine, database="db", sleep=Pauses())[0]["user"] == "me"
    assert transactions == [["good", "bad", "me"], ["good"], ["bad"], ["me"]]
    assert good.result[0]["user"] == "good" and bad.error is not None and bad.result is None
    assert type(bad.error).__name__ == "QueryError"


def test_a_conflict_that_outlasts_the_retries_fails_the_whole_batch() -> None:
    driver, session = _driver([_server_error(DEADLOCK)] * 2)
    queue = WriteQueue()
    other = _Pending(params=_params("other"))
    queue._pending.append(other)
    with pytest.raises(WriteConflictError):
        queue.submit(driver, _Pending(params=_params("me")), database="db", retry=RetryPolicy(attempts=2), sleep=Pauses())
    assert isinstance(other.error, WriteConflictError) and other.done.is_set()
    assert session.execute_write.call_count == 2  # not retried one by one: a conflict is not the writes' fault
    assert not queue._leading and not queue._pending
