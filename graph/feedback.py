"""Feedback writes: ``(:User)-[:INTERACTED {rating, ts, source: 'feedback'}]->(:Item)``, safe under concurrency.

:func:`record_interaction` writes one interaction into the active generation of a dataset and, in the
same transaction, keeps the materialised co-likes exact (:func:`graph.co_likes.refresh_co_likes`).

Concurrency. The co-like upkeep needs the user's like status of the item *before* the write, and it
changes counters shared by every writer (the item's liker count, the pair counts and weights, the
marker's relationship count, the dataset's counters). So the first thing the write transaction does,
before it reads or touches any other node, is to take the write lock of the dataset's ``(:Dataset)``
node, found by a label scan (an updating query would find it with a locking index seek, which takes a
shared lock first). Every feedback write of a dataset, and the co-like build's marker write, take that
lock first, so they run one after the other in one global lock order and cannot deadlock with each
other; everything the write reads afterwards (the previous rating, the user's likes) is read under
the lock. In front of that lock, the writers of one process queue in a :class:`WriteQueue`, which
applies the writes waiting together in one transaction (a group commit: one lock, one commit).

Idempotency. Under that lock, the user is merged (``MERGE``; the ``(dataset, gen, id)`` uniqueness
constraint backs it) and so is the relationship (one per user and item), so concurrent
first writes of a new user or pair create one node and one relationship. The same
``(user, item, rating, ts)`` sent again finds it stored: nothing is written, no counter moves and the
answer says ``replayed``; a request older than the stored rating (a smaller ``ts``) writes nothing
either (``outdated``), so a late duplicate never undoes a newer rating.

Retries. The transaction runs as a managed transaction (``session.execute_write``) whose session
allows the driver :data:`RetryPolicy.driver_retry_s` of its own retries (the API's serving driver
allows none, so that reads fail fast). A transient error that is left over (a deadlock with a writer
outside this module, a lock wait that timed out) is retried :data:`RetryPolicy.attempts` times in
all, after an exponentially growing, fully jittered pause; after the last one the write raises
:class:`graphrec.errors.WriteConflictError` (the API answers 503 with ``Retry-After``), which carries no
driver internals. Nothing of a failed attempt is written.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import neo4j
from neo4j import exceptions as neo4j_exc
from pydantic import BaseModel, ConfigDict, Field

from graph.connection import read, translate_error
from graphrec.errors import (
    Neo4jAuthError,
    Neo4jUnavailableError,
    NotFoundError,
    UnknownItemError,
    UnknownUserError,
    WriteConflictError,
)

log = logging.getLogger(__name__)


class Interaction(BaseModel):
    """A piece of feedback to write into the graph."""

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    rating: float | None = Field(None, ge=0.0, le=10.0)
    ts: int | None = Field(None, ge=0)
    create_user: bool = False


class InteractionResult(BaseModel):
    """What :func:`record_interaction` wrote."""

    user_id: str
    item_id: str
    rating: float | None
    ts: int | None
    created_user: bool
    created_relationship: bool
    liked_before: bool = Field(False, description="The user liked the item before the write (rating >= threshold, or implicit).")
    liked_after: bool = Field(False, description="The user likes the item after the write.")
    co_likes_updated: int | None = Field(None, description="Stored co-like pairs whose count changed (None: like status "
                                                           "unchanged, or no co-like materialisation).")
    co_likes_reweighted: int | None = Field(None, description="Stored co-like pairs of the item whose weight was recomputed.")
    replayed: bool = Field(False, description="The same rating and timestamp were already stored for this user and item: "
                                              "nothing was written.")
    outdated: bool = Field(False, description="A rating with a later timestamp is stored for this user and item: nothing was "
                                              "written (a late or repeated request never undoes a newer rating).")


class RetryPolicy(BaseModel):
    """How :func:`record_interaction` retries transient errors (lock conflicts)."""

    model_config = ConfigDict(frozen=True)

    driver_retry_s: float = Field(2.0, ge=0.0, description="The driver's own retry budget for the managed transaction "
                                                           "(its ``max_transaction_retry_time`` for this write's session).")
    attempts: int = Field(4, ge=1, description="Managed transactions tried in all before giving up.")
    base_s: float = Field(0.02, ge=0.0, description="Pause before the second attempt at most; doubles every attempt.")
    cap_s: float = Field(0.5, ge=0.0, description="Longest pause between two attempts.")
    tx_timeout_s: float = Field(15.0, gt=0.0, description="Server-side timeout of one transaction (lock waits included).")

    def pause(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter,
        ``uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))``."""
        return rng() * min(self.cap_s, self.base_s * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()

# The feedback write, in one global lock order. Its first clause takes the Dataset node's write lock
# (SET always locks the node, even when the value does not change), before any other node is read or
# written: feedback writes of a dataset are serialised, so the previous rating read below is exactly
# the one the co-like upkeep (graph.co_likes.refresh_co_likes, same transaction) changes, and no two
# writers can MERGE the same new user or the same new relationship at once. A request that repeats the
# stored rating and timestamp writes nothing (`replayed`), nor does one older than the stored rating
# (`outdated`: a late duplicate never undoes a newer rating). Like status changes are counted
# (Dataset.like_changes), so a co-like build sees that one happened while it counted. The like
# threshold is the active co-like marker's. Ratings are >= 0 and timestamps >= 0, so -1 stands for null
# in the replay comparison.
Q_RECORD_INTERACTION = """
MATCH (d:Dataset) USING SCAN d:Dataset WHERE d.name = $dataset
SET d.feedback_writes = coalesce(d.feedback_writes, 0)
WITH d
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
OPTIONAL MATCH (existing:User {dataset: $dataset, gen: d.gen, id: $user_id})
WITH d, i, existing
WHERE existing IS NOT NULL OR $create_user
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (cl:CoLiked {dataset: $dataset, tag: m.tag})
WITH d, i, existing, cl, coalesce(cl.like, $like) AS like
OPTIONAL MATCH (existing)-[old:INTERACTED]->(i)
WITH d, i, cl, like, existing IS NULL AS created_user, count(old) = 0 AS created_rel,
     count(CASE WHEN old.rating IS NULL OR old.rating >= like THEN old END) > 0 AS liked_before,
     count(CASE WHEN coalesce(old.rating, -1.0) = coalesce($rating, -1.0) AND coalesce(old.ts, -1) = coalesce($ts, -1)
                THEN old END) > 0 AS replayed,
     count(CASE WHEN old.ts > $ts THEN old END) > 0 AS newer
WITH d, i, cl, like, created_user, created_rel, liked_before, replayed, NOT replayed AND newer AS outdated
MERGE (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
MERGE (u)-[r:INTERACTED]->(i)
  ON CREATE SET r.source = 'feedback', r.split = null
FOREACH (x IN CASE WHEN replayed OR outdated THEN [] ELSE [r] END | SET x.rating = $rating, x.ts = $ts)
WITH d, cl, created_user, created_rel, liked_before, replayed, outdated,
     CASE WHEN replayed OR outdated THEN liked_before ELSE $rating IS NULL OR $rating >= like END AS liked_after, count(r) AS n
FOREACH (x IN CASE WHEN replayed OR outdated THEN [] ELSE [d] END | SET x.feedback_writes = x.feedback_writes + 1)
// the write's relationship moves the marker's count on, so the co-likes stay fresh
FOREACH (x IN CASE WHEN cl IS NOT NULL AND created_rel AND $upkeep THEN [cl] ELSE [] END | SET x.rels = x.rels + 1)
// like status changes are counted: a co-like build compares the count before and after it counted
FOREACH (x IN CASE WHEN liked_before <> liked_after THEN [d] ELSE [] END | SET x.like_changes = coalesce(x.like_changes, 0) + 1)
RETURN created_user, created_rel, liked_before, liked_after, replayed, outdated, cl IS NOT NULL AS co_likes
"""

# Why nothing was written (read after the write transaction returned no row).
Q_ITEM_EXISTS = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN i IS NOT NULL AS item_ok, u IS NOT NULL AS user_ok
"""


def record_interaction(
    driver: neo4j.Driver, interaction: Interaction, *, dataset: str, database: str = "neo4j", co_likes: bool = True,
    like_threshold: float = 4.0, retry: RetryPolicy = DEFAULT_RETRY, sleep: Callable[[float], None] = time.sleep,
) -> InteractionResult:
    """Write feedback ``(:User)-[:INTERACTED {source: 'feedback'}]->(:Item)`` into the active generation.

    An existing relationship gets the new rating and timestamp; the same rating and timestamp again
    write nothing (``replayed``), and neither does a timestamp older than the stored one
    (``outdated``). In the same write transaction, when the active model has a co-like
    materialisation (:mod:`graph.co_likes`) and the write changed whether the user likes the item
    (rating at least the marker's threshold, or implicit), the stored co-likes are updated
    incrementally (:func:`graph.co_likes.refresh_co_likes`), so explanations stay exact; the marker's
    relationship count moves on by the relationship the write created. Feedback writes of a dataset
    are serialised on the Dataset node's lock, taken first (see the module docstring). The
    transaction commits before this returns, and later reads through the same driver see it (the
    driver's bookmark manager).

    Args:
        co_likes (bool, optional): Keep the co-like materialisation up to date (``False``: write only;
            a created relationship then makes the marker stale). (default: ``True``)
        like_threshold (float, optional): What counts as a like when there is no materialisation
            (only for ``liked_before`` / ``liked_after``). (default: ``4.0``)
        retry (RetryPolicy, optional): Retries of transient errors. (default: :data:`DEFAULT_RETRY`)
        sleep (callable, optional): Waits between attempts (tests pass a recorder). (default: ``time.sleep``)

    Raises:
        UnknownItemError / UnknownUserError: Unknown item, or unknown user without ``create_user``.
        WriteConflictError: Transient conflicts outlasted the retries (nothing was written; safe to resend).
        Neo4jUnavailableError: Neo4j does not answer.
    """
    p = {"dataset": dataset, "user_id": interaction.user_id, "item_id": interaction.item_id, "rating": interaction.rating,
         "ts": interaction.ts, "create_user": interaction.create_user, "like": like_threshold, "upkeep": co_likes}
    done = write_queue(database, dataset).submit(driver, _Pending(params=p), database=database, retry=retry, sleep=sleep)
    if done is None:
        chk = read(driver, Q_ITEM_EXISTS, p, database)
        if not chk:
            raise NotFoundError(f"dataset {dataset!r} is not loaded")
        if not chk[0]["item_ok"]:
            raise UnknownItemError(f"unknown item {interaction.item_id!r} in dataset {dataset!r}")
        raise UnknownUserError(f"unknown user {interaction.user_id!r} in dataset {dataset!r} (set create_user to add a new user)")
    row, changed = done
    return InteractionResult(
        user_id=interaction.user_id, item_id=interaction.item_id, rating=interaction.rating, ts=interaction.ts,
        created_user=bool(row["created_user"]), created_relationship=bool(row["created_rel"]),
        liked_before=bool(row["liked_before"]), liked_after=bool(row["liked_after"]), replayed=bool(row.get("replayed", False)),
        outdated=bool(row.get("outdated", False)),
        co_likes_updated=None if changed is None else changed[0], co_likes_reweighted=None if changed is None else changed[1],
    )


@dataclass
class _Pending:
    """One write waiting in a :class:`WriteQueue`: its query parameters, then its outcome."""

    params: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def _apply(tx: neo4j.ManagedTransaction, params: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, int] | None] | None:
    """One write inside a transaction: the interaction, then the co-like upkeep when the like status changed."""
    from graph.co_likes import refresh_co_likes

    row = tx.run(Q_RECORD_INTERACTION, params).single()
    if row is None:
        return None
    out = dict(row)
    changed = None
    if params["upkeep"] and out["co_likes"] and out["liked_before"] != out["liked_after"]:
        changed = refresh_co_likes(tx, params["dataset"], params["user_id"], params["item_id"], delta=1 if out["liked_after"] else -1)
    return out, changed


class WriteQueue:
    """This process's queue in front of one dataset's feedback writes: a group commit.

    The Dataset node's lock in Neo4j is what makes the writes correct, also across processes, and it
    serialises them: each one holds it until its commit is durable, so one write at a time pays a
    commit (a log flush) and the commits cannot share one. Writers of this process therefore queue
    here; whoever finds the queue idle takes the writes waiting (up to ``max_batch``, in arrival order)
    and applies them one after the other in ONE transaction (one lock, one commit), then hands every
    writer its own answer. A write still answers only after its commit. Each write sees the ones
    before it in the batch, so replays and repeated pairs behave as when sent one by one. When a batch
    fails on something else than a transient conflict or an unreachable Neo4j, its writes are tried
    again one by one, so an error stays with the write that caused it. Queued here, a waiting write
    also holds no server thread (many transactions queued on one Neo4j lock made the server report
    deadlocks that were not there).

    Args:
        max_batch (int, optional): Most writes in one transaction. (default: ``64``)
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._gate = threading.Lock()
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()

    def submit(self, driver: neo4j.Driver, pending: _Pending, *, database: str, retry: RetryPolicy = DEFAULT_RETRY,
               sleep: Callable[[float], None] = time.sleep) -> Any:
        """Queue ``pending``, apply it (with the writes queued with it, or in a later batch) and return its outcome."""
        with self._lock:
            self._pending.append(pending)
        while not pending.done.is_set():
            with self._gate:
                if pending.done.is_set():
                    break
                with self._lock:
                    batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
                if batch:
                    self._run(driver, database, batch, retry, sleep)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _run(self, driver: neo4j.Driver, database: str, batch: list[_Pending], retry: RetryPolicy, sleep: Callable[[float], None]) -> None:
        @neo4j.unit_of_work(timeout=retry.tx_timeout_s)
        def work(tx: neo4j.ManagedTransaction) -> list[Any]:
            return [_apply(tx, p.params) for p in batch]

        try:
            try:
                results = run_write(driver, work, database=database, retry=retry, sleep=sleep,
                                    what="feedback write" if len(batch) == 1 else f"batch of {len(batch)} feedback writes")
            except (WriteConflictError, Neo4jUnavailableError, Neo4jAuthError) as e:
                for p in batch:
                    p.error = e
                return
            except Exception as e:
                if len(batch) == 1:
                    batch[0].error = e
                    return
                log.warning("a batch of %d feedback writes failed (%s); applying them one by one", len(batch), type(e).__name__)
                for p in batch:
                    self._run(driver, database, [p], retry, sleep)
                return
            for p, r in zip(batch, results, strict=True):
                p.result = r
        except BaseException as e:  # interrupted: no writer may wait for ever
            for p in batch:
                if p.result is None and p.error is None:
                    p.error = e
            raise
        finally:
            for p in batch:
                p.done.set()


_QUEUES: dict[tuple[str, str], WriteQueue] = {}
_QUEUES_LOCK = threading.Lock()


def write_queue(database: str, dataset: str) -> WriteQueue:
    """This process's :class:`WriteQueue` of ``dataset`` in ``database``."""
    key = (database, dataset)
    queue = _QUEUES.get(key)
    if queue is None:
        with _QUEUES_LOCK:
            queue = _QUEUES.setdefault(key, WriteQueue())
    return queue


def is_conflict(e: BaseException) -> bool:
    """Whether ``e`` is a transient server error worth another attempt (a deadlock, a lock wait or
    transaction that timed out), as opposed to Neo4j being down or a broken query."""
    if not isinstance(e, neo4j_exc.Neo4jError):
        return False
    code = e.code or ""
    return e.is_retryable() or code.startswith("Neo.TransientError.") or ".TransactionTimedOut" in code


def run_write(
    driver: neo4j.Driver, work: Callable[[neo4j.ManagedTransaction], Any], *, database: str, retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep, what: str = "write",
) -> Any:
    """Run ``work`` in a managed write transaction, retrying transient conflicts (see the module docstring).

    The session shares the driver's ``execute_query`` bookmark manager (later reads see the write)
    and gives the driver ``retry.driver_retry_s`` of its own retries; what is left is retried here, up
    to ``retry.attempts`` transactions in all, with jittered exponential pauses.

    Raises:
        WriteConflictError: The last attempt still failed on a transient conflict.
        Neo4jUnavailableError / Neo4jAuthError / QueryError: Other driver errors, translated.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            with driver.session(database=database, bookmark_manager=driver.execute_query_bookmark_manager,
                                max_transaction_retry_time=retry.driver_retry_s) as session:
                return session.execute_write(work)
        except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
            if not is_conflict(e):
                raise translate_error(e) from e
            code = getattr(e, "code", None)
            if attempt >= retry.attempts:
                log.warning("%s gave up after %d attempts on transient conflicts (last: %s)", what, attempt, code)
                raise WriteConflictError(f"the {what} conflicted with concurrent writes and was not applied after {attempt} "
                                         "attempts; nothing was written, send it again") from e
            pause = retry.pause(attempt)
            log.info("%s attempt %d failed on a transient conflict (%s); retrying in %.3f s", what, attempt, code, pause)
            sleep(pause)


__all__ = [
    "DEFAULT_RETRY", "Interaction", "InteractionResult", "Q_ITEM_EXISTS", "Q_RECORD_INTERACTION", "RetryPolicy", "WriteQueue",
    "is_conflict", "record_interaction", "run_write", "write_queue",
]
