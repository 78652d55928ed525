"""Datasets and their load generations: how every reader finds the *active* graph of a dataset.

Every data node carries ``dataset`` and ``gen``. The node ``(:Dataset {name})`` holds the active
generation in ``gen``; a ``replace`` load writes a new generation, flips ``Dataset.gen`` in one
small transaction when it is complete, then deletes the old generation. Readers must therefore
always resolve the active generation first. The Cypher pattern (paste into the Browser)::

    MATCH (d:Dataset {name: 'movielens'})
    MATCH (u:User {dataset: d.name, gen: d.gen})-[r:INTERACTED]->(i:Item {dataset: d.name, gen: d.gen})
    RETURN u.id, i.title, r.rating LIMIT 10

or, from Python, :func:`active_generation` and ``$dataset`` / ``$gen`` parameters.

Bookkeeping properties of ``(:Dataset)`` (written only by the loader):

``gen``
    The active generation (absent until the first load completes).
``last_gen``
    The highest generation number ever handed out (generations are never reused).
``garbage``
    Generations waiting to be deleted (an old generation after a flip, the partial generation
    of a failed replace).
``loading_gen``, ``loading_mode``, ``loading_pid``, ``loading_host``, ``loading_heartbeat``
    Set while a load runs (a lease). A lease whose process is gone (same host, dead pid) or
    whose heartbeat is older than :data:`STALE_AFTER_S` belongs to a killed load: its generation
    is an orphan and the next load, or ``graphrec load cleanup``, deletes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import neo4j
from neo4j import exceptions as neo4j_exc
from pydantic import BaseModel

from graph.connection import out_of_transaction_memory, read, translate_error, write
from graph.schema import DATA_LABELS, check_label
from graphrec.errors import LoadError, Neo4jError, NotFoundError

log = logging.getLogger(__name__)

_LIVE_LEASES: set[tuple[str, int]] = set()
"""(dataset, gen) of the leases held by loads running in this process (several threads may load)."""
_LIVE_LOCK = threading.Lock()

STALE_AFTER_S = 600.0
"""A load lease whose heartbeat is older than this (seconds) is considered dead."""

ACTIVE_GEN = "MATCH (d:Dataset {name: $dataset}) RETURN d.gen AS gen"
DATASET_INFO = "MATCH (d:Dataset) WHERE $dataset IS NULL OR d.name = $dataset RETURN d {.*} AS d ORDER BY d.name"

BEGIN_LOAD = """
MERGE (d:Dataset {name: $dataset})
ON CREATE SET d.last_gen = 0, d.garbage = []
SET d.lease_probe = $now
RETURN d {.*} AS d
"""

TAKE_LEASE = """
MATCH (d:Dataset {name: $dataset})
SET d.loading_gen = $gen, d.loading_mode = $mode, d.loading_pid = $pid, d.loading_host = $host,
    d.loading_heartbeat = $now, d.last_gen = CASE WHEN $gen > coalesce(d.last_gen, 0) THEN $gen ELSE d.last_gen END,
    d.garbage = [g IN coalesce(d.garbage, []) WHERE g <> $gen] + $orphans
REMOVE d.lease_probe
"""

HEARTBEAT = "MATCH (d:Dataset {name: $dataset}) WHERE d.loading_gen = $gen AND d.loading_pid = $pid SET d.loading_heartbeat = $now"

FLIP = """
MATCH (d:Dataset {name: $dataset})
WHERE d.loading_gen = $gen AND d.loading_pid = $pid
WITH d, d.gen AS old
SET d.gen = $gen, d.loaded_at = $loaded_at, d.source = $source, d.mode = $mode,
    d.garbage = [g IN coalesce(d.garbage, []) WHERE g <> $gen] + CASE WHEN old IS NULL OR old = $gen THEN [] ELSE [old] END
SET d += $counts
REMOVE d.loading_gen, d.loading_mode, d.loading_pid, d.loading_host, d.loading_heartbeat
RETURN old
"""

# Takes the Dataset node's write lock first (feedback writes take it too), so work done before FLIP in
# the same transaction sees every feedback write committed before the switch. Found by a label scan, as
# feedback writes find it: an index seek in an updating query takes a shared lock first, and two
# transactions upgrading shared locks deadlock (retried, but avoidable).
LOCK_FOR_FLIP = """
MATCH (d:Dataset) USING SCAN d:Dataset
WHERE d.name = $dataset AND d.loading_gen = $gen AND d.loading_pid = $pid
SET d.flipping = $gen
REMOVE d.flipping
RETURN d.gen AS old
"""

RELEASE_LEASE = """
MATCH (d:Dataset {name: $dataset})
WHERE d.loading_gen = $gen AND d.loading_pid = $pid
SET d.garbage = [g IN coalesce(d.garbage, []) WHERE g <> $gen] + CASE WHEN $discard AND $gen <> coalesce(d.gen, -1) THEN [$gen] ELSE [] END
REMOVE d.loading_gen, d.loading_mode, d.loading_pid, d.loading_host, d.loading_heartbeat
"""

FORGET_GARBAGE = "MATCH (d:Dataset {name: $dataset}) SET d.garbage = [g IN coalesce(d.garbage, []) WHERE g <> $gen]"

DROP_EMPTY_DATASET = "MATCH (d:Dataset {name: $dataset}) WHERE d.gen IS NULL AND d.loading_gen IS NULL AND size(coalesce(d.garbage, [])) = 0 DELETE d"


def _delete_rels_query(label: str) -> str:
    return (
        f"MATCH (n:`{check_label(label)}` {{dataset: $dataset, gen: $gen}})-[r]->() "
        "CALL (r) { DELETE r } IN TRANSACTIONS OF $limit ROWS"
    )


def _delete_nodes_query(label: str) -> str:
    return (
        f"MATCH (n:`{check_label(label)}` {{dataset: $dataset, gen: $gen}}) "
        "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF $limit ROWS"
    )


def _run_autocommit(driver: neo4j.Driver, query: str, params: dict[str, object], database: str) -> neo4j.SummaryCounters:
    """Run a ``CALL { ... } IN TRANSACTIONS`` statement, which needs an auto-commit transaction
    (``execute_query`` always opens a managed one)."""
    try:
        with driver.session(database=database) as session:
            return session.run(query, params).consume().counters
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e


class DatasetInfo(BaseModel):
    """The ``(:Dataset)`` node of one dataset."""

    name: str
    gen: int | None = None
    last_gen: int = 0
    garbage: list[int] = []
    loaded_at: str | None = None
    source: str | None = None
    mode: str | None = None
    loading_gen: int | None = None
    loading_mode: str | None = None
    loading_pid: int | None = None
    loading_host: str | None = None
    loading_heartbeat: float | None = None
    counts: dict[str, int] = {}


def _info(props: dict[str, object]) -> DatasetInfo:
    known = set(DatasetInfo.model_fields) - {"counts"}
    counts = {k[len("count_") :]: int(v) for k, v in props.items() if k.startswith("count_") and isinstance(v, (int, float))}
    data = {k: v for k, v in props.items() if k in known and v is not None}
    return DatasetInfo(**data, counts=counts)


def active_generation(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> int:
    """The active generation of ``dataset``: use it as ``$gen`` with ``{dataset: $dataset, gen: $gen}``.

    Raises:
        NotFoundError: The dataset has never been loaded completely.
    """
    records = read(driver, ACTIVE_GEN, {"dataset": dataset}, database=database)
    if not records or records[0]["gen"] is None:
        raise NotFoundError(f"dataset {dataset!r} is not loaded; run `graphrec load ...` first")
    return int(records[0]["gen"])


def list_datasets(driver: neo4j.Driver, database: str = "neo4j", dataset: str | None = None) -> list[DatasetInfo]:
    """Every ``(:Dataset)`` node (or just ``dataset``), with its generations and counts."""
    return [_info(dict(r["d"])) for r in read(driver, DATASET_INFO, {"dataset": dataset}, database=database)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_is_stale(info: DatasetInfo, now: float | None = None) -> bool:
    """Whether the running-load lease of ``info`` belongs to a process that is gone."""
    if info.loading_gen is None:
        return False
    now = time.time() if now is None else now
    if info.loading_host == socket.gethostname() and info.loading_pid is not None:
        if info.loading_pid == os.getpid():
            with _LIVE_LOCK:  # a lease of this process: live while a load thread holds it
                return (info.name, info.loading_gen) not in _LIVE_LEASES
        return not _pid_alive(info.loading_pid)
    return info.loading_heartbeat is None or now - info.loading_heartbeat > STALE_AFTER_S


class Lease(BaseModel):
    """A load's claim on a dataset: the generation it writes and whether that generation is new."""

    dataset: str
    gen: int
    previous_gen: int | None
    fresh: bool
    mode: str
    pid: int


def acquire_lease(driver: neo4j.Driver, dataset: str, mode: str, fresh: bool, database: str = "neo4j") -> Lease:
    """Claim ``dataset`` for one load, in one transaction.

    Args:
        dataset: Dataset name.
        mode: ``upsert`` or ``replace``.
        fresh: Write a new generation (replace, or the first load) instead of the active one.
        database: Database name.

    Returns:
        The lease. A dead load's generation found on the way is moved to ``garbage``.

    Raises:
        LoadError: Another load of the same dataset is running.
    """
    pid = os.getpid()

    def work(tx: neo4j.ManagedTransaction) -> Lease:
        props = tx.run(BEGIN_LOAD, dataset=dataset, now=time.time()).single(strict=True)["d"]
        info = _info(dict(props))
        orphans: list[int] = []
        if info.loading_gen is not None:
            if not lease_is_stale(info):
                raise LoadError(
                    f"another load of dataset {dataset!r} is running (pid {info.loading_pid} on {info.loading_host}, "
                    f"generation {info.loading_gen}); wait for it or run `graphrec load cleanup` once it is dead"
                )
            if info.loading_gen != info.gen:
                orphans.append(info.loading_gen)
        use_fresh = fresh or info.gen is None
        gen = (max(info.last_gen, info.gen or 0) + 1) if use_fresh else int(info.gen)  # type: ignore[arg-type]
        tx.run(TAKE_LEASE, dataset=dataset, gen=gen, mode=mode, pid=pid, host=socket.gethostname(), now=time.time(), orphans=orphans)
        return Lease(dataset=dataset, gen=gen, previous_gen=info.gen, fresh=use_fresh, mode=mode, pid=pid)

    lease = _execute_write(driver, work, database)
    with _LIVE_LOCK:
        _LIVE_LEASES.add((lease.dataset, lease.gen))
    return lease


def forget_lease(lease: Lease) -> None:
    """Stop counting ``lease`` as held by this process (its load gave up), even if Neo4j cannot be told."""
    with _LIVE_LOCK:
        _LIVE_LEASES.discard((lease.dataset, lease.gen))


def _execute_write(driver: neo4j.Driver, work: Callable[[neo4j.ManagedTransaction], object], database: str):  # type: ignore[no-untyped-def]
    try:
        with driver.session(database=database) as session:
            return session.execute_write(work)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e


def heartbeat(driver: neo4j.Driver, lease: Lease, database: str = "neo4j") -> None:
    """Refresh the lease's heartbeat (called between batches)."""
    write(driver, HEARTBEAT, {"dataset": lease.dataset, "gen": lease.gen, "pid": lease.pid, "now": time.time()}, database=database)


def flip_generation(
    driver: neo4j.Driver, lease: Lease, source: str, counts: dict[str, int], database: str = "neo4j",
    in_flip: Callable[[neo4j.ManagedTransaction], object] | None = None,
) -> int | None:
    """Make the lease's generation the active one (one small transaction) and release the lease.

    Args:
        in_flip: Work done in the same transaction just before the switch, after the Dataset node is
            write-locked (e.g. copying the feedback written since the reload copied it). Managed
            transactions are retried, so it must be idempotent.

    Returns:
        The previously active generation (now in ``garbage``), or None.

    Raises:
        LoadError: The lease was lost (another process took over the dataset).
    """
    params = {
        "dataset": lease.dataset,
        "gen": lease.gen,
        "pid": lease.pid,
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "mode": lease.mode,
        "counts": {f"count_{k}": int(v) for k, v in counts.items()},
    }

    def work(tx: neo4j.ManagedTransaction) -> list[neo4j.Record]:
        if tx.run(LOCK_FOR_FLIP, params).single() is None:
            return []
        if in_flip is not None:
            in_flip(tx)
        return list(tx.run(FLIP, params))

    try:
        records = _execute_write(driver, work, database)
    finally:
        forget_lease(lease)
    if not records:
        raise LoadError(f"lost the load lease on dataset {lease.dataset!r}; the new generation {lease.gen} was not activated")
    old = records[0]["old"]
    return None if old is None or old == lease.gen else int(old)


def _run_write(driver: neo4j.Driver, query: str, params: dict[str, object], database: str):  # type: ignore[no-untyped-def]
    try:
        return driver.execute_query(query, params, database_=database, routing_=neo4j.RoutingControl.WRITE)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e


def release_lease(driver: neo4j.Driver, lease: Lease, discard: bool, database: str = "neo4j") -> None:
    """Give up the lease; with ``discard`` the lease's (non-active) generation goes to ``garbage``."""
    forget_lease(lease)
    write(driver, RELEASE_LEASE, {"dataset": lease.dataset, "gen": lease.gen, "pid": lease.pid, "discard": discard}, database=database)


MIN_DELETE_BATCH = 250
"""Smallest batch :func:`delete_generation` falls back to when the server's transaction memory runs out."""


def _delete_in_batches(driver: neo4j.Driver, query: str, dataset: str, gen: int, batch_size: int, database: str) -> neo4j.SummaryCounters:
    """Run a batched delete; when a batch exceeds the server's transaction memory (shared with all running
    transactions, e.g. serving traffic), go on with batches a quarter the size (down to :data:`MIN_DELETE_BATCH`).
    Counters are those of the last, successful run (what earlier runs deleted is gone either way)."""
    size = batch_size
    while True:
        try:
            return _run_autocommit(driver, query, {"dataset": dataset, "gen": gen, "limit": size}, database)
        except Neo4jError as e:
            if size <= MIN_DELETE_BATCH or not out_of_transaction_memory(e):
                raise
            size = max(MIN_DELETE_BATCH, size // 4)
            log.info("deleting generation %s of %s in batches of %s (transaction memory exhausted)", gen, dataset, size)


def delete_generation(
    driver: neo4j.Driver,
    dataset: str,
    gen: int,
    database: str = "neo4j",
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> int:
    """Delete every node (and relationship) of one generation, in batches. Returns nodes deleted.

    Refuses to delete the active generation unless ``force`` (used by :func:`drop_dataset`).
    """
    try:
        active: int | None = active_generation(driver, dataset, database)
    except NotFoundError:
        active = None
    if active == gen and not force:
        raise LoadError(f"refusing to delete generation {gen} of {dataset!r}: it is the active one")
    deleted = 0
    for label in DATA_LABELS:
        # relationships first, ``batch_size`` a transaction: a node batch's DETACH DELETE would take all of
        # its nodes' relationships in one (10,000 items with 100 model neighbours each: a million), more
        # than the server's transaction memory, which serving reads share
        _delete_in_batches(driver, _delete_rels_query(label), dataset, gen, batch_size, database)
        n = _delete_in_batches(driver, _delete_nodes_query(label), dataset, gen, batch_size, database).nodes_deleted
        deleted += n
        if progress is not None and n:
            progress(n)
    write(driver, FORGET_GARBAGE, {"dataset": dataset, "gen": gen}, database=database)
    return deleted


class CleanupReport(BaseModel):
    """What :func:`cleanup` removed."""

    dataset: str
    generations: list[int]
    nodes_deleted: int


def cleanup(driver: neo4j.Driver, dataset: str | None = None, database: str = "neo4j", batch_size: int = 10_000) -> list[CleanupReport]:
    """Delete garbage generations and generations of dead loads (of one dataset or all).

    A running load (live lease) is left alone.
    """
    reports: list[CleanupReport] = []
    for info in list_datasets(driver, database, dataset):
        gens = [g for g in info.garbage if g != info.gen]
        if info.loading_gen is not None and lease_is_stale(info):
            stale = Lease(dataset=info.name, gen=info.loading_gen, previous_gen=info.gen, fresh=info.loading_gen != info.gen, mode=info.loading_mode or "?", pid=info.loading_pid or -1)
            release_lease(driver, stale, discard=stale.fresh, database=database)
            if stale.fresh and stale.gen not in gens:
                gens.append(stale.gen)
        deleted = 0
        for gen in sorted(set(gens)):
            deleted += delete_generation(driver, info.name, gen, database, batch_size)
        write(driver, DROP_EMPTY_DATASET, {"dataset": info.name}, database=database)
        if gens:
            reports.append(CleanupReport(dataset=info.name, generations=sorted(set(gens)), nodes_deleted=deleted))
    return reports


DELETE_DATASET = "MATCH (d:Dataset {name: $dataset}) DELETE d"


def drop_dataset(driver: neo4j.Driver, dataset: str, database: str = "neo4j", batch_size: int = 10_000) -> int:
    """Delete a dataset entirely: every generation and its ``(:Dataset)`` node. Returns nodes deleted.

    Raises:
        LoadError: A load of the dataset is running.
    """
    infos = list_datasets(driver, database, dataset)
    if not infos:
        return 0
    info = infos[0]
    if info.loading_gen is not None and not lease_is_stale(info):
        raise LoadError(f"a load of dataset {dataset!r} is running; cannot drop it")
    gens = set(info.garbage) | {g for g in (info.gen, info.loading_gen) if g is not None}
    deleted = sum(delete_generation(driver, dataset, g, database, batch_size, force=True) for g in sorted(gens))
    write(driver, DELETE_DATASET, {"dataset": dataset}, database=database)
    return deleted
