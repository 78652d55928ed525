"""Feedback writes: ``(:User)-[:INTERACTED {rating, ts, source: 'feedback', model_tag}]->(:Item)``, safe under concurrency.

``model_tag`` names the publication that was active when the rating was written: an embedding model
folds the ratings written under it into the user's vector at request time (:mod:`graph.recommend`);
a model fitted later was fitted on them and carries another tag.

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
applies the writes waiting together in one transaction (a group commit: one lock, one commit), as one
``UNWIND $rows`` statement per round of distinct users and items.

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

# The feedback write of a batch of rows, in one global lock order. Its first clause takes the Dataset
# node's write lock (SET always locks the node, even when the value does not change), before any other
# node is read or written: feedback writes of a dataset are serialised, so the previous rating read
# below is exactly the one the co-like upkeep (graph.co_likes.refresh_co_likes, same transaction)
# changes, and no two transactions can MERGE the same new user or the same new relationship at once.
# Every user and every item appears at most once in $rows (see _rounds), so no row reads what another
# row writes, and the rows may be applied in any order. A row that repeats the stored rating and timestamp writes
# nothing (`replayed`), nor does one older than the stored rating (`outdated`: a late duplicate never
# undoes a newer rating). The counters move once per statement: Dataset.feedback_writes by the rows
# written, Dataset.like_changes by the like status changes (a co-like build sees that one happened while
# it counted), the co-like marker's relationship count by the relationships created. The like
# threshold is the active co-like marker's. Items nobody liked when the co-likes were built have no
# stored liker count: it is counted before any row is written, so the upkeep of every row moves it by
# exactly one. Ratings are >= 0 and timestamps >= 0, so -1 stands for null in the replay comparison.
# A row whose item is unknown, or whose user is unknown without create_user, returns nothing.
Q_RECORD_INTERACTION = """
MATCH (d:Dataset) USING SCAN d:Dataset WHERE d.name = $dataset
SET d.feedback_writes = coalesce(d.feedback_writes, 0)
WITH d
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (cl:CoLiked {dataset: $dataset, tag: m.tag})
CALL (d, cl) {
  WITH d, cl WHERE cl IS NOT NULL
  UNWIND $rows AS row
  WITH d, cl, row WHERE row.upkeep
  MATCH (i:Item {dataset: $dataset, gen: d.gen, id: row.item_id}) WHERE i.co_likers IS NULL
  WITH DISTINCT cl, i
  SET i.co_likers = COUNT { MATCH (v:User)-[r:INTERACTED]->(i) WHERE r.rating IS NULL OR r.rating >= cl.like RETURN DISTINCT v }
}
UNWIND $rows AS row
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: row.item_id})
OPTIONAL MATCH (existing:User {dataset: $dataset, gen: d.gen, id: row.user_id})
WITH d, cl, m.tag AS mtag, row, i, existing
WHERE existing IS NOT NULL OR row.create_user
WITH d, cl, mtag, row, i, existing, coalesce(cl.like, row.like) AS like
OPTIONAL MATCH (existing)-[old:INTERACTED]->(i)
WITH d, cl, mtag, row, i, like, existing IS NULL AS created_user, count(old) = 0 AS created_rel,
     count(CASE WHEN old.rating IS NULL OR old.rating >= like THEN old END) > 0 AS liked_before,
     count(CASE WHEN coalesce(old.rating, -1.0) = coalesce(row.rating, -1.0) AND coalesce(old.ts, -1) = coalesce(row.ts, -1)
                THEN old END) > 0 AS replayed,
     count(CASE WHEN old.ts > row.ts THEN old END) > 0 AS newer
WITH d, cl, mtag, row, i, like, created_user, created_rel, liked_before, replayed, NOT replayed AND newer AS outdated
MERGE (u:User {dataset: $dataset, gen: d.gen, id: row.user_id})
MERGE (u)-[r:INTERACTED]->(i)
  ON CREATE SET r.source = 'feedback', r.split = null
WITH d, cl, row, like, r, created_user, created_rel, liked_before, replayed, outdated, replayed OR outdated AS skip, mtag
// model_tag: the publication that was active when the rating was written (embedding models fold it in, graph.recommend)
FOREACH (x IN CASE WHEN skip THEN [] ELSE [r] END | SET x.rating = row.rating, x.ts = row.ts, x.model_tag = mtag)
WITH d, cl, row, created_user, created_rel, liked_before, replayed, outdated, skip,
     CASE WHEN skip THEN liked_before ELSE row.rating IS NULL OR row.rating >= like END AS liked_after
WITH d, cl,
     collect({k: row.k, created_user: created_user, created_rel: created_rel, liked_before: liked_before,
              liked_after: liked_after, replayed: replayed, outdated: outdated}) AS out,
     sum(CASE WHEN skip THEN 0 ELSE 1 END) AS writes,
     sum(CASE WHEN liked_before <> liked_after THEN 1 ELSE 0 END) AS like_changes,
     sum(CASE WHEN created_rel AND row.upkeep THEN 1 ELSE 0 END) AS created_rels
SET d.feedback_writes = d.feedback_writes + writes
FOREACH (x IN CASE WHEN like_changes > 0 THEN [d] ELSE [] END | SET x.like_changes = coalesce(x.like_changes, 0) + like_changes)
// the relationships written move the marker's count on, so the co-likes stay fresh
FOREACH (x IN CASE WHEN cl IS NOT NULL AND created_rels > 0 THEN [cl] ELSE [] END | SET x.rels = x.rels + created_rels)
WITH cl, out
UNWIND out AS o
RETURN o.k AS k, o.created_user AS created_user, o.created_rel AS created_rel, o.liked_before AS liked_before,
       o.liked_after AS liked_after, o.replayed AS replayed, o.outdated AS outdated, cl IS NOT NULL AS co_likes
"""

# Rows in one Q_RECORD_INTERACTION statement at most (fixed-size chunks of a round).
ROWS_PER_STATEMENT = 64

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
    p = write_params(interaction, dataset=dataset, co_likes=co_likes, like_threshold=like_threshold)
    done = write_queue(database, dataset).submit(driver, _Pending(params=p), database=database, retry=retry, sleep=sleep)
    if done is None:
        chk = read(driver, Q_ITEM_EXISTS, p, database)
        if not chk:
            raise NotFoundError(f"dataset {dataset!r} is not loaded")
        if not chk[0]["item_ok"]:
            raise UnknownItemError(f"unknown item {interaction.item_id!r} in dataset {dataset!r}")
        raise UnknownUserError(f"unknown user {interaction.user_id!r} in dataset {dataset!r} (set create_user to add a new user)")
    return to_result(interaction, done)


def write_params(interaction: Interaction, *, dataset: str, co_likes: bool = True, like_threshold: float = 4.0) -> dict[str, Any]:
    """The parameters of one write in a :class:`WriteQueue` (see :func:`record_interaction` for the arguments)."""
    return {"dataset": dataset, "user_id": interaction.user_id, "item_id": interaction.item_id, "rating": interaction.rating,
            "ts": interaction.ts, "create_user": interaction.create_user, "like": like_threshold, "upkeep": co_likes}


def to_result(interaction: Interaction, done: tuple[dict[str, Any], tuple[int, int] | None]) -> InteractionResult:
    """The :class:`InteractionResult` of a write a :class:`WriteQueue` applied (its row and the co-like upkeep's counts)."""
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
    """One write waiting in a :class:`WriteQueue`: its query parameters, then its outcome.

    ``wake`` is set when the write is done, or when its writer is handed the lead of the queue.
    """

    params: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def _rounds(batch: list[dict[str, Any]]) -> list[list[int]]:
    """Split a batch (in arrival order) into rounds in which every user and every item appears at most once (pure).

    A write goes into the round after the last one holding its user or its item; rounds are applied in
    order, so any two writes that share a user or an item keep their order, and within a round no row
    reads what another row writes (rows touch different ``User`` nodes, items, liker counts and
    relationships). The answers (co-likes updated and reweighted) are those of the writes one by one.

    Returns:
        The positions in ``batch`` of every round's writes, in arrival order.
    """
    last_user: dict[str, int] = {}
    last_item: dict[str, int] = {}
    rounds: list[list[int]] = []
    for k, params in enumerate(batch):
        n = max(last_user.get(params["user_id"], -1), last_item.get(params["item_id"], -1)) + 1
        last_user[params["user_id"]] = last_item[params["item_id"]] = n
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(k)
    return rounds


def _apply(tx: neo4j.ManagedTransaction, batch: list[dict[str, Any]]) -> list[tuple[dict[str, Any], tuple[int, int] | None] | None]:
    """Apply a batch of writes inside one transaction, as if one after the other in arrival order.

    Each round (see :func:`_rounds`) is one ``UNWIND $rows`` statement per :data:`ROWS_PER_STATEMENT`
    rows; then, in arrival order, the co-like upkeep of every row whose like status changed.

    Returns:
        Per write: the row of :data:`Q_RECORD_INTERACTION` and the upkeep's counts, or ``None`` when
        nothing was written (unknown item, or unknown user without ``create_user``).
    """
    from graph.co_likes import refresh_co_likes

    out: list[tuple[dict[str, Any], tuple[int, int] | None] | None] = [None] * len(batch)
    for positions in _rounds(batch):
        for start in range(0, len(positions), ROWS_PER_STATEMENT):
            chunk = positions[start:start + ROWS_PER_STATEMENT]
            rows = [{"k": k, **{f: batch[k][f] for f in ROW_FIELDS}} for k in chunk]
            found = {int(rec["k"]): dict(rec) for rec in tx.run(Q_RECORD_INTERACTION, {"dataset": batch[chunk[0]]["dataset"], "rows": rows})}
            for k in chunk:
                row = found.get(k)
                if row is None:
                    continue
                params, changed = batch[k], None
                if params["upkeep"] and row["co_likes"] and row["liked_before"] != row["liked_after"]:
                    changed = refresh_co_likes(tx, params["dataset"], params["user_id"], params["item_id"],
                                               delta=1 if row["liked_after"] else -1)
                out[k] = (row, changed)
    return out


# What every row of Q_RECORD_INTERACTION carries (besides its position k).
ROW_FIELDS = ("user_id", "item_id", "rating", "ts", "create_user", "like", "upkeep")


class WriteQueue:
    """This process's queue in front of one dataset's feedback writes: a group commit.

    The Dataset node's lock in Neo4j is what makes the writes correct, also across processes, and it
    serialises them: each transaction holds it until its commit is durable, so the commits of
    separate transactions cannot share a log flush. Writers of this process therefore queue here. One
    writer at a time leads: it takes every write waiting (up to ``max_batch``, in arrival order),
    applies them in ONE transaction (one lock, one commit, one ``UNWIND $rows`` statement per round,
    see :func:`_apply`), hands every writer its own answer, and hands the lead straight to the oldest
    write still waiting (so the next batch starts without waiting for anyone to notice). A write
    still answers only after its commit. The batch behaves as the writes sent one by one: replays and
    repeated pairs, and a user created by an earlier write, are seen by the later ones. When a batch
    fails on something else than a transient conflict or an unreachable Neo4j, its writes are tried
    again one by one, so an error stays with the write that caused it. Queued here, a waiting write
    also holds no server thread (many transactions queued on one Neo4j lock made the server report
    deadlocks that were not there).

    Args:
        max_batch (int, optional): Most writes in one transaction. (default: ``256``)
    """

    def __init__(self, max_batch: int = 256) -> None:
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._leading = False

    def submit(self, driver: neo4j.Driver, pending: _Pending, *, database: str, retry: RetryPolicy = DEFAULT_RETRY,
               sleep: Callable[[float], None] = time.sleep) -> Any:
        """Queue ``pending``, apply it (with the writes queued with it, or in a later batch) and return its outcome."""
        with self._lock:
            self._pending.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wake.wait()  # done by another writer's batch, or handed the lead
        if not pending.done.is_set():
            self._lead(driver, database, retry, sleep)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _lead(self, driver: neo4j.Driver, database: str, retry: RetryPolicy, sleep: Callable[[float], None]) -> None:
        """Apply one batch from the front of the queue (the leader's own write is its first), then hand the lead on."""
        with self._lock:
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
        try:
            self._run(driver, database, batch, retry, sleep)
        finally:
            with self._lock:
                nxt = self._pending[0] if self._pending else None
                self._leading = nxt is not None
            for p in batch:
                p.wake.set()
            if nxt is not None:
                nxt.wake.set()

    def _run(self, driver: neo4j.Driver, database: str, batch: list[_Pending], retry: RetryPolicy, sleep: Callable[[float], None]) -> None:
        params = [p.params for p in batch]

        @neo4j.unit_of_work(timeout=retry.tx_timeout_s)
        def work(tx: neo4j.ManagedTransaction) -> list[Any]:
            return _apply(tx, params)

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
    "DEFAULT_RETRY", "Interaction", "InteractionResult", "Q_ITEM_EXISTS", "Q_RECORD_INTERACTION", "ROWS_PER_STATEMENT", "RetryPolicy",
    "WriteQueue", "is_conflict", "record_interaction", "run_write", "to_result", "write_params", "write_queue",
]
