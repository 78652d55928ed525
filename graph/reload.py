"""What a ``replace`` reload carries from the active generation into the new one before the flip.

Two things survive a reload (:func:`graph.load.load_frames` calls these between writing the new
generation and flipping to it):

* **Feedback** (:func:`carry_feedback`): interactions written through the API
  (``INTERACTED {source: 'feedback'}``) are copied when their item exists in the new generation and
  their user does too (a user who only has feedback, i.e. was created through the API, is created in
  the new generation). The others are reported with the reason (``item removed``, ``user removed``).
  Feedback written while the reload runs is copied again inside the flip transaction
  (:func:`resync_feedback_tx`, which takes the Dataset node's write lock, the lock feedback writes
  take) and once more after the flip, before the old generation is deleted.
* **The active model** (:func:`carry_model`): every property the ``(:ActiveModel)`` pointer names
  (keys ending in ``_prop``) is copied from old to new nodes with the same id, items and users; the
  model's item-item relationships (:data:`graph.schema.MODEL_RELS` with the active ``tag``) are copied
  between kept items; items new in this generation get vectors from their text through a callback
  (the active checkpoint's cold-start head, computed outside ``graph``). The pointer's ``gen`` is
  moved to the new generation in the flip transaction (:func:`point_model_at_tx`).

All copies are server-side ``UNWIND $ids`` batches of :data:`CHUNK` ids; nothing here reads vectors
into Python except the new items' computed ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import neo4j
import numpy as np
from pydantic import BaseModel, Field

from graph.connection import out_of_transaction_memory, read, write
from graph.schema import ITEM, MODEL_RELS, USER
from graphrec.errors import Neo4jError

log = logging.getLogger(__name__)

CHUNK = 2000
"""Ids per ``UNWIND`` copy batch of properties."""

REL_BATCH = 10_000
"""Model relationships copied per transaction (a live model stores about 100 per item: ~100 items a batch).
A batch that still exceeds the server's transaction memory is split in halves."""

EXAMPLES = 20
"""How many uncarried interactions a report lists by name."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")

NewItemVectors = Callable[[list[str], list[str]], "tuple[np.ndarray, np.ndarray | None] | None"]
"""``(item_ids, texts) -> (model-space vectors [n, d], text vectors [n, t] or None)`` for items new in a
generation (the active checkpoint's cold-start head); ``None`` when the model has no text head."""


def _prop(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a property name graphrec writes: {name!r}")
    return name


def _rel(rel_type: str) -> str:
    if rel_type not in MODEL_RELS:
        raise ValueError(f"unknown model relationship type {rel_type!r}; expected one of {MODEL_RELS}")
    return rel_type


# ---------------------------------------------------------------------------------------------
# Feedback
# ---------------------------------------------------------------------------------------------

Q_FEEDBACK_WATERMARK = "MATCH (d:Dataset {name: $dataset}) RETURN d.feedback_writes AS n"

# Feedback relationships of the old generation and whether their ends exist in the new one. A user is
# "loaded" when it has interactions that did not come through the API (else it was created by feedback).
Q_FEEDBACK_OF_GEN = """
MATCH (u:User {dataset: $dataset, gen: $old})-[r:INTERACTED]->(i:Item)
WHERE r.source = 'feedback'
OPTIONAL MATCH (nu:User {dataset: $dataset, gen: $new, id: u.id})
OPTIONAL MATCH (ni:Item {dataset: $dataset, gen: $new, id: i.id})
RETURN u.id AS user, i.id AS item, properties(r) AS props, nu IS NOT NULL AS user_kept, ni IS NOT NULL AS item_kept,
       EXISTS { MATCH (u)-[x:INTERACTED]->() WHERE coalesce(x.source, 'load') <> 'feedback' } AS user_loaded
"""

# A relationship the new data already holds keeps its values, unless it is itself carried feedback
# that the old generation has a newer (or equally new) version of.
Q_CARRY_FEEDBACK = """
UNWIND $rows AS row
MATCH (i:Item {dataset: $dataset, gen: $new, id: row.item})
MERGE (u:User {dataset: $dataset, gen: $new, id: row.user})
MERGE (u)-[r:INTERACTED]->(i)
  ON CREATE SET r = row.props
  ON MATCH SET r += CASE WHEN r.source = 'feedback' AND coalesce(row.props.ts, 0) >= coalesce(r.ts, 0) THEN row.props ELSE {} END
"""

Q_LOCK_DATASET = """
MATCH (d:Dataset) USING SCAN d:Dataset WHERE d.name = $dataset
SET d.feedback_writes = coalesce(d.feedback_writes, 0)
RETURN d.feedback_writes AS n
"""


class NotCarried(BaseModel):
    """One feedback interaction a reload did not carry."""

    user_id: str
    item_id: str
    reason: str


class FeedbackCarry(BaseModel):
    """What a reload did with the feedback of the previous generation."""

    found: int = Field(0, description="Feedback interactions in the previous generation.")
    carried: int = Field(0, description="Copied into the new generation before the flip.")
    carried_late: int = Field(0, description="Written during the reload and copied in or just after the flip.")
    already_present: int = Field(0, description="Pairs the new data already holds (their loaded values kept).")
    users_created: int = Field(0, description="Users created through feedback, created in the new generation too.")
    dropped: int = Field(0, description="Not carried on purpose (--drop-feedback).")
    not_carried: dict[str, int] = Field(default_factory=dict, description="Count by reason ('item removed', 'user removed').")
    examples: list[NotCarried] = Field(default_factory=list, description=f"The first {EXAMPLES} not carried.")

    @property
    def lost(self) -> int:
        """Feedback interactions that did not reach the new generation for a reason."""
        return sum(self.not_carried.values())


Runner = Callable[[str, dict[str, Any]], Any]


def _plan(rows: Sequence[Any]) -> tuple[list[dict[str, Any]], list[NotCarried], set[str]]:
    carry: list[dict[str, Any]] = []
    skipped: list[NotCarried] = []
    created: set[str] = set()
    for r in rows:
        if not r["item_kept"]:
            skipped.append(NotCarried(user_id=str(r["user"]), item_id=str(r["item"]), reason="item removed"))
        elif not r["user_kept"] and r["user_loaded"]:
            skipped.append(NotCarried(user_id=str(r["user"]), item_id=str(r["item"]), reason="user removed"))
        else:
            if not r["user_kept"]:
                created.add(str(r["user"]))
            carry.append({"user": r["user"], "item": r["item"], "props": dict(r["props"])})
    return carry, skipped, created


def feedback_watermark(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> int | None:
    """The dataset's feedback write counter (``None`` when nothing counts feedback writes)."""
    rows = read(driver, Q_FEEDBACK_WATERMARK, {"dataset": dataset}, database)
    return None if not rows or rows[0]["n"] is None else int(rows[0]["n"])


def carry_feedback(driver: neo4j.Driver, dataset: str, old: int, new: int, database: str = "neo4j") -> FeedbackCarry:
    """Copy the feedback of generation ``old`` into ``new`` (batches of :data:`CHUNK`)."""
    params = {"dataset": dataset, "old": old, "new": new}
    rows = read(driver, Q_FEEDBACK_OF_GEN, params, database)
    carry, skipped, created = _plan(rows)
    made = 0
    for start in range(0, len(carry), CHUNK):
        made += write(driver, Q_CARRY_FEEDBACK, {**params, "rows": carry[start:start + CHUNK]}, database).counters.relationships_created
    report = FeedbackCarry(found=len(rows), carried=made, already_present=len(carry) - made, users_created=len(created))
    _add_skipped(report, skipped)
    return report


def _add_skipped(report: FeedbackCarry, skipped: list[NotCarried]) -> None:
    for s in skipped:
        report.not_carried[s.reason] = report.not_carried.get(s.reason, 0) + 1
        if len(report.examples) < EXAMPLES and s not in report.examples:
            report.examples.append(s)


def count_feedback(driver: neo4j.Driver, dataset: str, gen: int, database: str = "neo4j") -> int:
    """Feedback interactions of one generation (what :func:`FeedbackCarry.dropped` counts)."""
    rows = read(driver, "MATCH (u:User {dataset: $dataset, gen: $gen})-[r:INTERACTED]->() WHERE r.source = 'feedback' "
                        "RETURN count(r) AS n", {"dataset": dataset, "gen": gen}, database)
    return int(rows[0]["n"]) if rows else 0


def resync_feedback_tx(tx: neo4j.ManagedTransaction, dataset: str, old: int, new: int) -> tuple[int, list[NotCarried]]:
    """Inside a write transaction: copy feedback of ``old`` that ``new`` lacks (or holds in an older
    version). Returns the relationships created and the newly skipped ones."""
    params = {"dataset": dataset, "old": old, "new": new}
    rows = list(tx.run(Q_FEEDBACK_OF_GEN, params))
    carry, skipped, _ = _plan(rows)
    made = 0
    for start in range(0, len(carry), CHUNK):
        made += tx.run(Q_CARRY_FEEDBACK, {**params, "rows": carry[start:start + CHUNK]}).consume().counters.relationships_created
    return made, skipped


def lock_dataset_tx(tx: neo4j.ManagedTransaction, dataset: str) -> int:
    """Take the Dataset node's write lock (feedback writes take it too); returns the feedback counter."""
    row = tx.run(Q_LOCK_DATASET, dataset=dataset).single()
    return 0 if row is None or row["n"] is None else int(row["n"])


def resync_feedback(driver: neo4j.Driver, dataset: str, old: int, new: int, database: str = "neo4j") -> tuple[int, list[NotCarried]]:
    """:func:`resync_feedback_tx` in its own managed write transaction (the sweep after the flip)."""
    from neo4j import exceptions as neo4j_exc

    from graph.connection import translate_error

    try:
        with driver.session(database=database, bookmark_manager=driver.execute_query_bookmark_manager) as session:
            return session.execute_write(lambda tx: resync_feedback_tx(tx, dataset, old, new))
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e


def merge_late(report: FeedbackCarry, made: int, skipped: list[NotCarried]) -> None:
    """Count feedback copied in or after the flip into ``report`` (skips already reported are not counted twice)."""
    report.carried_late += made
    known = {(e.user_id, e.item_id) for e in report.examples}
    fresh = [s for s in skipped if (s.user_id, s.item_id) not in known]
    if len(report.examples) >= EXAMPLES:  # cannot tell new from reported ones beyond the examples: count none twice
        fresh = []
    _add_skipped(report, fresh)


# ---------------------------------------------------------------------------------------------
# The active model
# ---------------------------------------------------------------------------------------------

Q_POINTER = "MATCH (m:ActiveModel {dataset: $dataset}) RETURN m {.*} AS m"

Q_KEPT_IDS = """
MATCH (n:`{label}` {{dataset: $dataset, gen: $new}})
MATCH (o:`{label}` {{dataset: $dataset, gen: $old, id: n.id}})
RETURN n.id AS id
"""


def _copy_props_query(label: str, props: Sequence[str]) -> str:
    sets = ", ".join(f"n.`{_prop(p)}` = o.`{p}`" for p in props)
    return (f"UNWIND $ids AS id MATCH (o:`{label}` {{dataset: $dataset, gen: $old, id: id}}) "
            f"MATCH (n:`{label}` {{dataset: $dataset, gen: $new, id: id}}) SET {sets}")


def _rel_degrees_query(rel_type: str) -> str:
    return (f"MATCH (a:Item {{dataset: $dataset, gen: $old}})-[r:`{_rel(rel_type)}` {{tag: $tag}}]->(b:Item) "
            "WHERE b.dataset = $dataset AND b.gen = $old RETURN a.id AS id, count(r) AS n")


def _copy_rels_query(rel_type: str) -> str:
    # CREATE, not MERGE: the new generation is not active and has none of the tag's relationships until
    # this copy; a batch is one transaction (all or nothing), and a failed reload discards the generation
    return (f"UNWIND $ids AS id MATCH (a:Item {{dataset: $dataset, gen: $old, id: id}})-[r:`{_rel(rel_type)}` {{tag: $tag}}]->(b:Item) "
            "WHERE b.dataset = $dataset AND b.gen = $old "
            "MATCH (na:Item {dataset: $dataset, gen: $new, id: a.id}) MATCH (nb:Item {dataset: $dataset, gen: $new, id: b.id}) "
            f"CREATE (na)-[x:`{rel_type}`]->(nb) SET x = properties(r)")


def batches_by_weight(ids: Sequence[str], weights: Sequence[int], limit: int) -> list[list[str]]:
    """Consecutive batches of ``ids`` whose ``weights`` add up to at most ``limit`` (an id heavier than
    ``limit`` gets a batch of its own) (pure)."""
    out: list[list[str]] = []
    batch: list[str] = []
    total = 0
    for i, w in zip(ids, weights):
        if batch and total + w > limit:
            out.append(batch)
            batch, total = [], 0
        batch.append(i)
        total += w
    if batch:
        out.append(batch)
    return out


def _write_batches(driver: neo4j.Driver, query: str, params: dict[str, Any], batches: list[list[str]], database: str,
                   progress: Callable[[int], None] | None = None) -> int:
    """Run ``query`` once per batch of ``$ids``, each in its own transaction, in order; a batch that exceeds
    the server's transaction memory (shared with serving) is split in halves. Returns the relationships created."""
    todo, created = batches[::-1], 0
    while todo:
        ids = todo.pop()
        try:
            created += write(driver, query, {**params, "ids": ids}, database).counters.relationships_created
        except Neo4jError as e:
            if len(ids) < 2 or not out_of_transaction_memory(e):
                raise
            log.info("copying in smaller batches (transaction memory exhausted)")
            todo += [ids[len(ids) // 2:], ids[: len(ids) // 2]]
            continue
        if progress:
            progress(len(ids))
    return created


def _copy_rels(driver: neo4j.Driver, rel_type: str, params: dict[str, Any], kept: set[str], database: str) -> int:
    """Copy one model relationship type between kept items, about :data:`REL_BATCH` relationships a
    transaction. Returns the relationships created."""
    degrees = [(r["id"], int(r["n"])) for r in read(driver, _rel_degrees_query(rel_type), params, database) if r["id"] in kept]
    batches = batches_by_weight([i for i, _ in degrees], [n for _, n in degrees], REL_BATCH)
    return _write_batches(driver, _copy_rels_query(rel_type), params, batches, database)


def _cold_items_query(prop: str) -> str:
    # only items new in this generation: a kept item has what it had (a model without item vectors, such
    # as a live EASE model, has none to give)
    return (f"MATCH (i:Item {{dataset: $dataset, gen: $new}}) WHERE i.`{_prop(prop)}` IS NULL "
            "AND NOT EXISTS { MATCH (:Item {dataset: $dataset, gen: $old, id: i.id}) } "
            "RETURN i.id AS id, coalesce(i.text, i.title) AS text")


def _write_vectors_query(prop: str) -> str:
    return (f"UNWIND $rows AS row MATCH (n:Item {{dataset: $dataset, gen: $new, id: row.id}}) SET n.`{_prop(prop)}` = row.v")


Q_POINT_MODEL = """
MATCH (m:ActiveModel {dataset: $dataset})
WHERE m.tag = $tag
SET m.gen = $gen
RETURN m.tag AS tag
"""


class ModelCarry(BaseModel):
    """What a reload carried of the active model into the new generation."""

    tag: str
    version: str
    properties: list[str] = Field(description="Pointer properties copied (item and user).")
    items_kept: int = Field(0, description="Items in both generations (their properties copied).")
    users_kept: int = Field(0, description="Users in both generations (their properties copied).")
    relationships: int = Field(0, description="Model item-item relationships copied between kept items.")
    cold_items: int = Field(0, description="New items given a vector from their text.")
    items_without_vector: int = Field(0, description="New items left without a model vector (kept items keep what they had).")
    seconds: float = 0.0


def active_pointer(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> dict[str, Any] | None:
    """The raw ``(:ActiveModel)`` properties of ``dataset`` (None when nothing is published)."""
    rows = read(driver, Q_POINTER, {"dataset": dataset}, database)
    return dict(rows[0]["m"]) if rows and rows[0]["m"] is not None else None


def _ids(driver: neo4j.Driver, label: str, params: dict[str, Any], database: str) -> list[str]:
    return [r["id"] for r in read(driver, Q_KEPT_IDS.format(label=label), params, database)]


def carry_model(
    driver: neo4j.Driver, dataset: str, old: int, new: int, pointer: dict[str, Any], *, database: str = "neo4j",
    new_item_vectors: NewItemVectors | None = None, progress: Callable[[int], None] | None = None,
) -> ModelCarry:
    """Copy the active model's properties and relationships into generation ``new`` and embed its new items.

    Args:
        pointer: The ``(:ActiveModel)`` properties (:func:`active_pointer`).
        new_item_vectors: Vectors of items that are new in ``new`` (the model's text head); without it,
            or when it returns ``None``, they stay without a vector until the next publish.
    """
    import time

    from graph.embeddings import augment_items

    t0 = time.perf_counter()
    params = {"dataset": dataset, "old": old, "new": new}
    props = sorted(_prop(str(v)) for k, v in pointer.items() if k.endswith("_prop") and v)
    report = ModelCarry(tag=str(pointer["tag"]), version=str(pointer.get("version")), properties=props)
    for label in (ITEM, USER):
        ids = _ids(driver, label, params, database)
        if label == ITEM:
            report.items_kept = len(ids)
        else:
            report.users_kept = len(ids)
        if props:
            _write_batches(driver, _copy_props_query(label, props), params,
                           [ids[start:start + CHUNK] for start in range(0, len(ids), CHUNK)], database, progress)
        if label == ITEM:
            item_ids = ids
    kept = set(item_ids)
    for rel_type in MODEL_RELS:
        report.relationships += _copy_rels(driver, rel_type, {**params, "tag": pointer["tag"]}, kept, database)
    item_prop = pointer.get("item_prop")
    if item_prop:
        cold = [(r["id"], r["text"]) for r in read(driver, _cold_items_query(item_prop), params, database)]
        with_text = [(i, t) for i, t in cold if t]
        got = None
        if with_text and new_item_vectors is not None and pointer.get("dim") and pointer.get("max_norm") is not None:
            try:
                got = new_item_vectors([i for i, _ in with_text], [t for _, t in with_text])
            except Exception as e:  # noqa: BLE001 - the reload goes on; these items wait for the refit
                log.warning("no text vectors for %d new items of %s (%s: %s); they get one at the next publish",
                            len(with_text), dataset, type(e).__name__, e)
        if got is not None:
            emb, txt = got
            emb = np.asarray(emb, dtype=np.float64)
            if emb.shape[0] != len(with_text) or emb.shape[1] + 1 != int(pointer["dim"]):
                raise ValueError(f"new-item vectors have shape {emb.shape}; the active model stores {int(pointer['dim']) - 1}-d vectors")
            aug, _ = augment_items(emb, max_norm=float(pointer["max_norm"]))
            ids = [i for i, _ in with_text]
            _write_rows(driver, item_prop, ids, aug, params, database)
            if txt is not None and pointer.get("text_prop"):
                _write_rows(driver, str(pointer["text_prop"]), ids, np.asarray(txt, dtype=np.float64), params, database)
            report.cold_items = len(ids)
        report.items_without_vector = len(cold) - report.cold_items
    report.seconds = time.perf_counter() - t0
    return report


def _write_rows(driver: neo4j.Driver, prop: str, ids: list[str], vectors: np.ndarray, params: dict[str, Any], database: str) -> None:
    q = _write_vectors_query(prop)
    for start in range(0, len(ids), CHUNK):
        rows = [{"id": i, "v": [float(x) for x in v]} for i, v in zip(ids[start:start + CHUNK], vectors[start:start + CHUNK])]
        write(driver, q, {**params, "rows": rows}, database)


def point_model_at_tx(tx: neo4j.ManagedTransaction, dataset: str, tag: str, gen: int) -> bool:
    """Inside the flip transaction: record that the pointer's model (``tag``) covers generation ``gen``.
    False when another publication took over meanwhile (its vectors are on the old generation)."""
    return tx.run(Q_POINT_MODEL, dataset=dataset, tag=tag, gen=gen).single() is not None


__all__ = [
    "FeedbackCarry", "ModelCarry", "NewItemVectors", "NotCarried", "active_pointer", "carry_feedback", "carry_model",
    "count_feedback", "feedback_watermark", "lock_dataset_tx", "merge_late", "point_model_at_tx", "resync_feedback",
    "resync_feedback_tx",
]
