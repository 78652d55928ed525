"""Batch loads and reloads of a dataset: validation gate, generations, phases, summary.

:func:`load_frames` is the one entry point (the CLI and the benchmark call it):

1. Validation gate: when the frames carry more rejected rows than ``max_errors``, raise
   :class:`~graphrec.errors.ValidationFailedError` before anything reaches Neo4j.
2. Schema: constraints and indexes ``IF NOT EXISTS``, waited online.
3. Lease: claim the dataset (:func:`graph.datasets.acquire_lease`). ``replace`` (and the first
   load of a dataset) writes a *new* generation with ``CREATE``; ``upsert`` writes into the
   active generation with ``MERGE``. Generations of earlier killed or failed loads are deleted.
4. Phases: users, items, attribute nodes, item-attribute links, interactions, tag
   applications; fixed-size ``UNWIND`` batches, one tqdm bar per phase.
5. Carry (``replace`` over an active generation, :mod:`graph.reload`): the feedback written through
   the API and the active model's vectors and item-item relationships are copied into the new
   generation; new items get vectors from their text (``new_item_vectors``).
6. Flip: one small transaction copies the feedback written meanwhile, makes the new generation active
   and points the model at it; after a short grace the feedback that raced the flip is copied once
   more, then the old generation is deleted in batches. Until the flip, readers (which resolve the active generation) see the old graph
   unchanged; if anything fails before it, the partial generation is removed (or, when Neo4j is
   gone, left for the next load or ``graphrec load cleanup``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import neo4j
from pydantic import BaseModel, Field
from tqdm import tqdm

from graph.connection import write
from graph.datasets import Lease, acquire_lease, delete_generation, flip_generation, forget_lease, heartbeat, list_datasets, release_lease
from graph.reload import (
    FeedbackCarry,
    ModelCarry,
    NewItemVectors,
    active_pointer,
    carry_feedback,
    carry_model,
    count_feedback,
    feedback_watermark,
    lock_dataset_tx,
    merge_late,
    point_model_at_tx,
    resync_feedback,
    resync_feedback_tx,
)
from graph.schema import ensure_schema
from graph.stats import DatasetCounts, dataset_counts
from graph.writes import Phase, build_phases
from graphrec.errors import GraphrecError, LoadError
from graphrec.frames import DatasetFrames
from loaders.validation import enforce_max_errors

log = logging.getLogger(__name__)

LoadMode = Literal["upsert", "replace"]
BatchHook = Callable[[str, int], None]
"""Called after every committed batch with (phase name, batch number within the phase)."""

HEARTBEAT_EVERY_S = 15.0

OLD_GENERATION_DELETE_BATCH = 2000
"""Nodes (or relationships) per transaction when the previous generation is deleted after a flip: small, so
that the deletion leaves the server's shared transaction memory to the requests served meanwhile."""


class LoadOptions(BaseModel):
    """How to run a load."""

    mode: LoadMode = Field("upsert", description="upsert: MERGE into the active generation; replace: write a new generation and flip.")
    batch_size: int = Field(10_000, ge=1, le=1_000_000, description="Rows (or relationships) per UNWIND transaction.")
    max_errors: int = Field(0, ge=0, description="Largest number of rejected rows tolerated; more stops the load before any write.")
    database: str = Field("neo4j", description="Neo4j database name.")
    progress: bool = Field(True, description="Show a tqdm bar per phase.")
    writers: int = Field(1, ge=1, le=8, description="Write transactions in flight at once (batches of a phase are independent).")
    carry_feedback: bool = Field(True, description="replace: copy the feedback written through the API into the new generation "
                                 "(False drops it on purpose).")
    carry_model: bool = Field(True, description="replace: copy the active model's vectors and relationships into the new generation.")
    flip_grace_s: float = Field(1.0, ge=0, description="Pause after the flip before the last feedback copy and the old generation's "
                                "deletion (writes that read the old generation just before the flip finish).")


class FileSummary(BaseModel):
    """Rows read and rejected in one input file."""

    file: str
    rows_read: int
    rejected: int


class PhaseSummary(BaseModel):
    """Rows written by one phase and how fast."""

    name: str
    rows: int
    batches: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        """Throughput of the phase."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


class LoadSummary(BaseModel):
    """What a load did (printed by ``graphrec load``, returned as JSON by the benchmark)."""

    dataset: str
    source: str
    mode: LoadMode
    generation: int
    previous_generation: int | None
    fresh_generation: bool
    files: list[FileSummary]
    phases: list[PhaseSummary]
    counts: DatasetCounts
    old_generations_deleted: list[int] = []
    feedback: FeedbackCarry | None = Field(None, description="replace over an active generation: the feedback carried or not.")
    model: ModelCarry | None = Field(None, description="replace with an active model: what of it was carried.")
    seconds: float

    @property
    def rows_read(self) -> int:
        """Data rows read from all files."""
        return sum(f.rows_read for f in self.files)

    @property
    def rows_rejected(self) -> int:
        """Rows rejected by validation."""
        return sum(f.rejected for f in self.files)

    @property
    def rows_written(self) -> int:
        """Nodes and relationships written (sent) by all write phases."""
        return sum(p.rows for p in self.phases if p.name not in ("cleanup", "schema", "delete old generation"))

    def table(self) -> str:
        """A plain-text summary: files, phases with rows/s, totals."""
        lines = [
            f"dataset {self.dataset} ({self.source}), mode {self.mode}, generation {self.generation}"
            + (f" (previous {self.previous_generation})" if self.previous_generation is not None else ""),
            f"{'file':<28}{'read':>12}{'rejected':>10}",
        ]
        lines += [f"{f.file:<28}{f.rows_read:>12,}{f.rejected:>10,}" for f in self.files]
        lines.append(f"{'phase':<28}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
        lines += [f"{p.name:<28}{p.rows:>12,}{p.seconds:>10.2f}{p.rows_per_s:>12,.0f}" for p in self.phases]
        lines.append(
            f"total: {self.rows_read:,} rows read, {self.rows_written:,} written, {self.rows_rejected:,} rejected "
            f"in {self.seconds:.1f} s"
        )
        c = self.counts
        lines.append(
            f"graph now: {c.users:,} users, {c.items:,} items, {c.interactions:,} interactions, "
            f"{c.tag_applications:,} tag applications, attributes {dict(c.attributes)}"
        )
        f = self.feedback
        if f is not None:
            lost = ", ".join(f"{n:,} {reason}" for reason, n in sorted(f.not_carried.items())) or "none"
            lines.append(
                f"feedback: {f.found:,} found, {f.carried + f.carried_late:,} carried ({f.carried_late:,} written during the reload), "
                f"{f.already_present:,} already in the new data, {f.users_created:,} feedback users created, "
                f"{f.dropped:,} dropped on request; not carried: {lost}"
            )
            lines += [f"  not carried: user {e.user_id} item {e.item_id} ({e.reason})" for e in f.examples]
        m = self.model
        if m is not None:
            lines.append(
                f"model {m.version} kept serving: {m.items_kept:,} items and {m.users_kept:,} users kept their vectors, "
                f"{m.relationships:,} item-item relationships copied, {m.cold_items:,} new items embedded from text, "
                f"{m.items_without_vector:,} new items without a vector until the next publish ({m.seconds:.1f} s)"
            )
        return "\n".join(lines)


def _file_summaries(frames: DatasetFrames) -> list[FileSummary]:
    rejected: dict[str, int] = {}
    for p in frames.problems:
        rejected[p.file] = rejected.get(p.file, 0) + 1
    names = list(frames.rows_read) + [f for f in rejected if f not in frames.rows_read]
    return [FileSummary(file=f, rows_read=frames.rows_read.get(f, 0), rejected=rejected.get(f, 0)) for f in names]


def _run_phase(
    driver: neo4j.Driver,
    phase: Phase,
    lease: Lease,
    options: LoadOptions,
    on_batch: BatchHook | None,
    last_beat: list[float],
) -> PhaseSummary:
    """Run one phase's batches with up to ``options.writers`` transactions in flight.

    Batches are independent (node batches hold disjoint keys; relationship batches hold
    disjoint users), so they may commit in any order; a failed batch fails the phase.
    """
    start = time.perf_counter()
    params = {"dataset": lease.dataset, "gen": lease.gen}
    batches = 0
    written = 0

    def run(rows: list[object]) -> None:
        write(driver, phase.query, {**params, "rows": rows}, database=options.database)

    with tqdm(total=phase.total, desc=f"{lease.dataset}: {phase.name}", unit="rows", disable=not options.progress, leave=False) as bar:

        def done(n: int) -> None:
            nonlocal batches, written
            batches += 1
            written += n
            bar.update(n)
            if on_batch is not None:
                on_batch(phase.name, batches)
            if time.monotonic() - last_beat[0] > HEARTBEAT_EVERY_S:
                heartbeat(driver, lease, options.database)
                last_beat[0] = time.monotonic()

        if options.writers <= 1:
            for rows, n in phase.batches():
                run(rows)
                done(n)
        else:
            with ThreadPoolExecutor(max_workers=options.writers, thread_name_prefix="graphrec-load") as pool:
                pending: deque[tuple[Future[None], int]] = deque()
                try:
                    for rows, n in phase.batches():
                        pending.append((pool.submit(run, rows), n))
                        if len(pending) >= options.writers:
                            fut, k = pending.popleft()
                            fut.result()
                            done(k)
                    while pending:
                        fut, k = pending.popleft()
                        fut.result()
                        done(k)
                finally:
                    for fut, _ in pending:
                        fut.cancel()
    return PhaseSummary(name=phase.name, rows=written, batches=batches, seconds=time.perf_counter() - start)


def _delete_garbage(driver: neo4j.Driver, lease: Lease, options: LoadOptions, keep: set[int]) -> tuple[list[int], PhaseSummary | None]:
    info = list_datasets(driver, options.database, lease.dataset)
    if not info:
        return [], None
    gens = sorted(g for g in set(info[0].garbage) if g not in keep)
    if not gens:
        return [], None
    start = time.perf_counter()
    deleted = 0
    with tqdm(desc=f"{lease.dataset}: delete generations {gens}", unit="nodes", disable=not options.progress, leave=False) as bar:
        for g in gens:
            deleted += delete_generation(driver, lease.dataset, g, options.database, batch_size=max(options.batch_size, 1000), progress=bar.update)
    return gens, PhaseSummary(name="cleanup", rows=deleted, batches=len(gens), seconds=time.perf_counter() - start)


def load_frames(
    driver: neo4j.Driver, frames: DatasetFrames, options: LoadOptions | None = None, on_batch: BatchHook | None = None,
    new_item_vectors: NewItemVectors | None = None,
) -> LoadSummary:
    """Validate and write ``frames`` as dataset ``frames.name``.

    Args:
        driver: An open driver (the caller owns it).
        frames: The data read by a reader of :mod:`loaders`.
        options: Mode, batch size, max errors, database, progress bars, what a replace carries.
        on_batch: Test hook called after every committed batch, and with phase ``"carry"`` before the
            flip (raise from it to simulate a failure half way).
        new_item_vectors: ``replace`` with an active model: vectors from text for items new in this
            generation (the active checkpoint's cold-start head; see :data:`graph.reload.NewItemVectors`).

    Returns:
        The summary: files read and rejected, per-phase rows and times, the graph's counts.

    Raises:
        ValidationFailedError: More than ``max_errors`` rejected rows; nothing was written.
        LoadError: The load failed; for a new generation the previous graph is unchanged.
        Neo4jError: Neo4j is unreachable or refused the credentials before the load started.
    """
    options = options or LoadOptions()
    enforce_max_errors(frames.problems, options.max_errors)
    t0 = time.perf_counter()
    phases: list[PhaseSummary] = []

    start = time.perf_counter()
    ensure_schema(driver, options.database)
    phases.append(PhaseSummary(name="schema", rows=0, batches=1, seconds=time.perf_counter() - start))

    lease = acquire_lease(driver, frames.name, options.mode, fresh=options.mode == "replace", database=options.database)
    keep = {lease.gen} | ({lease.previous_gen} if lease.previous_gen is not None else set())
    current_phase = "cleanup"
    deleted_gens: list[int] = []
    try:
        gens, cleanup_summary = _delete_garbage(driver, lease, options, keep)
        if cleanup_summary is not None:
            phases.append(cleanup_summary)
            deleted_gens += gens
        kind = "create" if lease.fresh else "merge"
        last_beat = [time.monotonic()]
        for phase in build_phases(frames, kind, options.batch_size):
            current_phase = phase.name
            phases.append(_run_phase(driver, phase, lease, options, on_batch, last_beat))
        carried = None
        if lease.fresh and lease.previous_gen is not None and lease.previous_gen != lease.gen:
            current_phase = "carry"
            carried = _carry(driver, lease, options, phases, new_item_vectors)
            if on_batch is not None:
                on_batch("carry", 1)
        current_phase = "counts"
        counts = dataset_counts(driver, frames.name, lease.gen, options.database)
        current_phase = "flip"
        previous = flip_generation(driver, lease, frames.source, counts.flat(), options.database,
                                   in_flip=carried.in_flip if carried is not None else None)
        if carried is not None:
            carried.committed()
    except BaseException as e:
        _abandon(driver, lease, options)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        kept = (
            f"the previous graph (generation {lease.previous_gen}) is unchanged"
            if lease.fresh and lease.previous_gen is not None
            else "nothing of it is active"
            if lease.fresh
            else "the upsert may be partly applied; run it again to complete it"
        )
        detail = str(e) if isinstance(e, GraphrecError) else f"{type(e).__name__}: {e}"
        raise LoadError(f"load of dataset {frames.name!r} failed in phase {current_phase!r}: {detail}; {kept}") from e

    # the new generation is active; feedback that raced the flip is copied once more, then the old one goes
    if previous is not None and carried is not None and carried.feedback is not None and carried.fb_enabled:
        time.sleep(options.flip_grace_s)
        try:
            merge_late(carried.feedback, *resync_feedback(driver, frames.name, previous, lease.gen, options.database))
        except GraphrecError as e:
            log.warning("could not copy the feedback written during the flip of %s: %s", frames.name, e)
    if previous is not None:
        start = time.perf_counter()
        try:
            # small batches: serving shares the server's transaction memory while the old generation goes
            n = delete_generation(driver, frames.name, previous, options.database, batch_size=OLD_GENERATION_DELETE_BATCH)
            deleted_gens.append(previous)
            phases.append(PhaseSummary(name="delete old generation", rows=n, batches=1, seconds=time.perf_counter() - start))
        except GraphrecError as e:
            log.warning("generation %s of %s stays until `graphrec load cleanup`: %s", previous, frames.name, e)
    return LoadSummary(
        dataset=frames.name,
        source=frames.source,
        mode=options.mode,
        generation=lease.gen,
        previous_generation=lease.previous_gen if lease.previous_gen != lease.gen else None,
        fresh_generation=lease.fresh,
        files=_file_summaries(frames),
        phases=phases,
        counts=counts,
        old_generations_deleted=deleted_gens,
        feedback=carried.feedback if carried is not None else None,
        model=carried.model if carried is not None else None,
        seconds=time.perf_counter() - t0,
    )


class _Carried:
    """What :func:`_carry` copied, and the work the flip transaction adds."""

    def __init__(self, lease: Lease, feedback: FeedbackCarry | None, fb_enabled: bool, watermark: int | None, model: ModelCarry | None) -> None:
        self.lease, self.feedback, self.fb_enabled, self.watermark, self.model = lease, feedback, fb_enabled, watermark, model
        self._late: tuple[int, list] = (0, [])

    def in_flip(self, tx: neo4j.ManagedTransaction) -> None:
        """Under the Dataset lock: copy feedback written since the carry, point the model at the new generation."""
        lease = self.lease
        assert lease.previous_gen is not None
        if self.fb_enabled and self.feedback is not None:
            now = lock_dataset_tx(tx, lease.dataset)
            self._late = (0, [])
            if self.watermark is None or now != self.watermark:
                self._late = resync_feedback_tx(tx, lease.dataset, lease.previous_gen, lease.gen)
        if self.model is not None:
            point_model_at_tx(tx, lease.dataset, self.model.tag, lease.gen)

    def committed(self) -> None:
        """Count the flip's late copies once its transaction committed."""
        if self.feedback is not None:
            merge_late(self.feedback, *self._late)
            self._late = (0, [])


def _carry(driver: neo4j.Driver, lease: Lease, options: LoadOptions, phases: list[PhaseSummary],
           new_item_vectors: NewItemVectors | None) -> _Carried:
    """Copy feedback and the active model from the previous generation into the lease's one."""
    assert lease.previous_gen is not None
    old, new, db = lease.previous_gen, lease.gen, options.database
    start = time.perf_counter()
    watermark = feedback_watermark(driver, lease.dataset, db)
    if options.carry_feedback:
        fb = carry_feedback(driver, lease.dataset, old, new, db)
    else:
        fb = FeedbackCarry(dropped=count_feedback(driver, lease.dataset, old, db))
        fb.found = fb.dropped
    phases.append(PhaseSummary(name="carry feedback", rows=fb.carried, batches=1, seconds=time.perf_counter() - start))
    model = None
    pointer = active_pointer(driver, lease.dataset, db) if options.carry_model else None
    if pointer is not None and pointer.get("tag"):
        start = time.perf_counter()
        model = carry_model(driver, lease.dataset, old, new, pointer, database=db, new_item_vectors=new_item_vectors)
        phases.append(PhaseSummary(name="carry model", rows=model.items_kept + model.users_kept + model.relationships + model.cold_items,
                                   batches=1, seconds=time.perf_counter() - start))
    return _Carried(lease, fb, options.carry_feedback, watermark, model)


def _abandon(driver: neo4j.Driver, lease: Lease, options: LoadOptions) -> None:
    """Best effort after a failure: release the lease and delete a partial new generation."""
    forget_lease(lease)  # from now on the lease counts as dead, so a later load or cleanup can take over
    try:
        release_lease(driver, lease, discard=lease.fresh, database=options.database)
        if lease.fresh:
            delete_generation(driver, lease.dataset, lease.gen, options.database, batch_size=max(options.batch_size, 1000))
    except BaseException as cleanup_error:  # noqa: BLE001 -- Neo4j gone: the next load or `graphrec load cleanup` removes it
        log.warning("could not remove partial generation %s of %s: %s", lease.gen, lease.dataset, cleanup_error)


__all__ = ["FileSummary", "LoadOptions", "LoadSummary", "PhaseSummary", "load_frames"]
