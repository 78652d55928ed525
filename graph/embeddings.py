"""Embedding write-back: model versions, native vector indexes and the atomic model switch.

Layout in the graph (per dataset):

* Each published model gets a *tag* (``<dataset>_<version>_<nonce>``, sanitised to ``[A-Za-z0-9_]``).
  Its vectors live in the properties ``emb_<tag>`` of ``(:User)`` and ``(:Item)`` nodes of the
  dataset's active generation, optional text vectors in ``txt_<tag>`` on items, and one native
  vector index ``graphrec_item_<tag>`` (cosine) covers ``Item.emb_<tag>``.
* A fusion checkpoint with validation-fitted score-fusion weights also gets what serving needs to
  re-rank exactly like the offline ``fusion_both`` evaluation (:mod:`graph.recommend_fusion`):
  ``User.fus_<tag>`` = ``[graph mean, graph std, content mean, content std, history size]`` (the
  user's score statistics over all items), ``User.prof_<tag>`` (unit content profile),
  ``Item.pop_<tag>`` (``log(1 + training count)``), a second vector index ``graphrec_text_<tag>`` on
  ``Item.txt_<tag>``, and on the pointer the bucket bounds, the weights, the popularity mean/std and
  the ids of the most popular items.
* ``(:ActiveModel {dataset})`` is the pointer readers follow: it names the version, the property
  names and the index. Readers read the pointer *in the same query* that searches the index, so a
  request sees one model, never a mix. Publishing writes the new properties and builds the new index
  while the old model keeps serving, flips the pointer in one small transaction, and only then drops
  the old index and removes the old properties.

Dot product vs. cosine (the MIPS-to-cosine reduction, Bachrach et al. 2014): LightGCN scores are
dot products :math:`u^\\top i`, the index ranks by cosine. With :math:`M = \\max_i \\lVert i \\rVert`
every item is stored as :math:`\\tilde i = [i, \\sqrt{M^2 - \\lVert i \\rVert^2}]` (norm exactly
:math:`M`) and every user as :math:`\\tilde u = [u, 0]`, so

.. math::
    \\cos(\\tilde u, \\tilde i) = \\frac{u^\\top i}{\\lVert u \\rVert M},

a positive per-user constant times the dot product: the index ranking equals the dot-product ranking,
and the dot product is recovered exactly from the index score ``s = (1 + cos) / 2`` as
:math:`u^\\top i = (2s - 1) \\lVert u \\rVert M`. Neo4j 5.26 quantizes vector indexes by default
(int8), which reorders near ties and distorts scores; graphrec indexes are created with
``vector.quantization.enabled: false`` so index scores are exact float32 cosines.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import neo4j
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graph.connection import read, write
from graph.serving_lists import DEFAULT_LIST_SIZE, FusionTables, compute_serving_lists, seen_items
from graphrec.clock import utc_now_iso
from graphrec.errors import CoverageTooLowError, InvalidArgumentError, ModelNotReadyError, NotFoundError, QueryError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1000
"""Rows per ``UNWIND`` write batch."""

_SAFE = re.compile(r"[^A-Za-z0-9_]+")
_TAG_RE = re.compile(r"^[A-Za-z0-9_]{1,120}$")
_PROP_RE = re.compile(r"^(emb|txt|pop|prof|fus|top|fin)_[A-Za-z0-9_]{1,120}$")
_INDEX_RE = re.compile(r"^graphrec_(item|text)_[A-Za-z0-9_]{1,120}$")

POPULAR_IDS = 1000
"""How many of the most popular item ids the pointer keeps (the popularity candidate source)."""

PROP_KINDS: tuple[tuple[str, str], ...] = (
    ("Item", "item_prop"), ("User", "user_prop"), ("Item", "text_prop"), ("Item", "pop_prop"),
    ("User", "profile_prop"), ("User", "fusion_prop"), ("User", "top_prop"), ("Item", "in_prop"),
)
"""(label, pointer key) of every property a publication may write (what :func:`drop_model` removes)."""

VECTOR_LABELS: frozenset[str] = frozenset({"User", "Item"})
"""Labels that may carry embedding properties (allow-list for Cypher built from names)."""


class EmbeddingSetLike(Protocol):
    """What :func:`publish` needs from an exported model (``gnn``'s ``EmbeddingSet``)."""

    model_version: str
    user_ids: Sequence[str]
    user_vectors: Any
    item_ids: Sequence[str]
    item_vectors: Any


class ServingFusionLike(FusionTables, Protocol):
    """What :func:`publish` needs for score-level fusion at serving time (``gnn.fusion.serving.ServingFusion``):
    the tables of the fused ranking and the most popular ids."""

    def popular_ids(self, n: int = ...) -> list[str]: ...


class ModelInfo(BaseModel):
    """The active model of a dataset, as stored on its ``(:ActiveModel)`` pointer node."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    version: str = Field(description="Model version (from the checkpoint).")
    tag: str = Field(description="Unique tag of this publication; property and index names derive from it.")
    dim: int = Field(description="Dimension of the stored (augmented) vectors.")
    max_norm: float = Field(description="M of the MIPS-to-cosine reduction.")
    kind: str = Field("embedding", description="``embedding`` (user and item vectors) or ``live`` (users scored from "
                      "their history at request time, see graph.serving).")
    item_prop: str
    user_prop: str | None = None
    in_prop: str | None = Field(None, description="Live models: item property holding the in-factors P.")
    alpha: float | None = Field(None, description="Live models: weight of the low-rank part.")
    gamma: float | None = Field(None, description="Live models: weight of the popularity part.")
    text_prop: str | None = None
    item_index: str | None = None
    text_index: str | None = Field(None, description="Vector index on the text vectors (score fusion's content source).")
    fusion_prop: str | None = Field(None, description="User property [graph mean, graph std, content mean, content std, history size].")
    profile_prop: str | None = Field(None, description="User property: unit content profile.")
    pop_prop: str | None = Field(None, description="Item property: log(1 + training count).")
    top_prop: str | None = Field(None, description="User property: the user's best unseen item ids under this model "
                                 "(graph.serving_lists), best first.")
    top_size: int | None = Field(None, description="Items per serving list (0 or None: no lists, every request searches the indexes).")
    fusion_bounds: list[int] | None = Field(None, description="Activity bucket upper bounds (history size).")
    fusion_weights: list[float] | None = Field(None, description="Flat (graph, content, popularity) weights per bucket.")
    pop_mean: float | None = None
    pop_std: float | None = None
    n_users: int = 0
    n_items: int = 0
    gen: int | None = Field(None, description="Load generation the vectors are on (published onto, or carried to by a reload).")
    checkpoint: str | None = None
    published_at: str | None = None


class PublishReport(BaseModel):
    """Summary of one :func:`publish` call."""

    model: ModelInfo
    users_written: int
    items_written: int
    cold_items: int = Field(description="Items of the active generation that had no model vector and got one from text.")
    items_without_vector: int = Field(description="Items left without a vector (not recommendable until the next publish).")
    text_vectors: int
    score_fusion: dict[str, Any] | None = Field(None, description="What was written for score-level fusion (None: plain dot-product serving).")
    serving_lists: int = Field(0, description="Users given a serving list (graph.serving_lists).")
    previous_tag: str | None
    seconds: float


def prop_name(kind: str, tag: str) -> str:
    """Property name for ``kind`` (``emb`` or ``txt``) of publication ``tag`` (validated)."""
    name = f"{kind}_{tag}"
    check_prop(name)
    return name


def check_prop(name: str) -> str:
    """Return ``name`` if it is an allowed embedding property name, else raise."""
    if not _PROP_RE.match(name):
        raise InvalidArgumentError(f"not an embedding property name: {name!r}")
    return name


def check_index(name: str) -> str:
    """Return ``name`` if it is an allowed graphrec vector index name, else raise."""
    if not _INDEX_RE.match(name):
        raise InvalidArgumentError(f"not a graphrec vector index name: {name!r}")
    return name


def make_tag(dataset: str, version: str) -> str:
    """A fresh publication tag for ``version`` of ``dataset``."""
    base = _SAFE.sub("_", f"{dataset}_{version}").strip("_")[:80] or "model"
    tag = f"{base}_{uuid.uuid4().hex[:6]}"
    if not _TAG_RE.match(tag):  # pragma: no cover - guarded by the substitution above
        raise InvalidArgumentError(f"bad model tag {tag!r}")
    return tag


def augment_items(vectors: np.ndarray, max_norm: float | None = None) -> tuple[np.ndarray, float]:
    """MIPS-to-cosine: append :math:`\\sqrt{M^2 - \\lVert i \\rVert^2}` to every item vector.

    Args:
        vectors (np.ndarray): Item vectors, shape ``[n, d]``.
        max_norm (float, optional): ``M``; the largest row norm when ``None``.

    Returns:
        The ``[n, d + 1]`` augmented vectors (every row has norm ``M``) and ``M``.
    """
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1)
    m = float(norms.max()) if max_norm is None and len(norms) else float(max_norm or 1.0)
    if m <= 0:
        m = 1.0
    extra = np.sqrt(np.clip(m * m - norms * norms, 0.0, None))
    return np.hstack([v, extra[:, None]]), m


def augment_users(vectors: np.ndarray) -> np.ndarray:
    """MIPS-to-cosine: append a 0 to every user (query) vector, shape ``[n, d]`` -> ``[n, d + 1]``."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim == 1:
        return np.append(v, 0.0)
    return np.hstack([v, np.zeros((v.shape[0], 1))])


def score_to_dot(score: float, user_norm: float, max_norm: float) -> float:
    """Recover the dot product from Neo4j's cosine index score ``(1 + cos) / 2``."""
    return (2.0 * float(score) - 1.0) * float(user_norm) * float(max_norm)


def _as_matrix(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidArgumentError(f"{name} must be a 2-d matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{name} contains NaN or infinite values")
    return arr


# ---------------------------------------------------------------------------------------------
# Cypher
# ---------------------------------------------------------------------------------------------

Q_ACTIVE_GEN = "MATCH (d:Dataset {name: $dataset}) RETURN d.gen AS gen"

Q_ACTIVE_MODEL = "MATCH (m:ActiveModel {dataset: $dataset}) RETURN m {.*} AS m"

# An item's text is its text, else its title; an item with neither has none (its id is no description:
# encoding ids made every such pair "close", e.g. on Gowalla, which has no item text at all).
Q_ITEMS_OF_GEN = """
MATCH (i:Item {dataset: $dataset, gen: $gen})
RETURN i.id AS id, coalesce(i.text, i.title) AS text
"""

Q_COUNT_WITH_PROP = "MATCH (n:`{label}` {{dataset: $dataset, gen: $gen}}) WHERE n.`{prop}` IS NOT NULL RETURN count(n) AS c"

Q_WRITE_VECTORS = """
UNWIND $rows AS row
MATCH (n:`{label}` {{dataset: $dataset, gen: $gen, id: row.id}})
SET n.`{prop}` = row.v
RETURN count(n) AS c
"""

Q_CREATE_INDEX = """
CREATE VECTOR INDEX `{index}` IF NOT EXISTS FOR (i:Item) ON i.`{prop}`
OPTIONS {{indexConfig: {{`vector.dimensions`: $dim, `vector.similarity_function`: 'cosine',
                          `vector.quantization.enabled`: false}}}}
"""

Q_AWAIT_INDEX = "CALL db.awaitIndex($index, $timeout)"

Q_SWITCH = """
MERGE (m:ActiveModel {dataset: $dataset})
WITH m, m.tag AS previous_tag, m {.*} AS previous
SET m += $props
RETURN previous_tag, previous
"""

Q_DROP_INDEX = "DROP INDEX `{index}` IF EXISTS"

# The query layer reads every pointer key, also the ones a publication leaves null; a key Neo4j has
# never seen makes it warn on every query, so publish creates the tokens (idempotent).
Q_CREATE_PROPERTY_TOKENS = "UNWIND $names AS name CALL db.createProperty(name)"

Q_REMOVE_PROP_BATCH = """
MATCH (n:`{label}`) WHERE n.`{prop}` IS NOT NULL
WITH n LIMIT $batch
REMOVE n.`{prop}`
RETURN count(n) AS c
"""

Q_LIST_INDEXES = "SHOW INDEXES YIELD name, type WHERE type = 'VECTOR' AND name STARTS WITH 'graphrec_' RETURN name"


def item_coverage(model_items: set[str] | Sequence[str], graph_items: Any) -> float:
    """Share of ``graph_items`` (ids of the active generation) that are in ``model_items`` (1.0 when the graph has none)."""
    ids = set(graph_items)
    if not ids:
        return 1.0
    return len(ids & set(model_items)) / len(ids)


def check_coverage(model_items: set[str] | Sequence[str], graph_items: Any, min_coverage: float | None, *, version: str,
                   dataset: str) -> None:
    """Refuse a model whose items cover less than ``min_coverage`` of the active generation (``None``: no check).

    Raises:
        CoverageTooLowError: The share is below ``min_coverage``.
    """
    if min_coverage is None:
        return
    share = item_coverage(model_items, graph_items)
    if share < min_coverage:
        raise CoverageTooLowError(
            f"refusing to publish {version} onto dataset {dataset!r}: its items cover {share:.1%} of the active generation's "
            f"{len(graph_items):,} items, below the minimum {min_coverage:.0%} (a model of another catalogue?); "
            "publish with --min-coverage 0 to override")


def active_gen(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> int:
    """The active load generation of ``dataset``.

    Raises:
        NotFoundError: The dataset was never loaded.
    """
    rows = read(driver, Q_ACTIVE_GEN, {"dataset": dataset}, database)
    if not rows or rows[0]["gen"] is None:
        raise NotFoundError(f"dataset {dataset!r} is not loaded (run `graphrec load ...` first)")
    return int(rows[0]["gen"])


def active_model(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> ModelInfo | None:
    """The active model of ``dataset`` or ``None`` when nothing was published yet."""
    rows = read(driver, Q_ACTIVE_MODEL, {"dataset": dataset}, database)
    if not rows or rows[0]["m"] is None:
        return None
    return ModelInfo.model_validate(rows[0]["m"])


def require_active_model(driver: neo4j.Driver, dataset: str, database: str = "neo4j") -> ModelInfo:
    """Like :func:`active_model` but raises :class:`ModelNotReadyError` when none is published."""
    m = active_model(driver, dataset, database)
    if m is None:
        raise ModelNotReadyError(f"no model is published for dataset {dataset!r} (run `graphrec publish --checkpoint PATH`)")
    return m


def _write_vectors(
    driver: neo4j.Driver, label: str, prop: str, dataset: str, gen: int, ids: Sequence[str], vectors: np.ndarray,
    database: str, progress: Callable[[int], None] | None = None,
) -> int:
    if label not in VECTOR_LABELS:
        raise InvalidArgumentError(f"label {label!r} cannot carry embeddings")
    check_prop(prop)
    return _write_values(driver, label, prop, dataset, gen, ids, vectors, database, progress, as_list=True)


def _write_values(
    driver: neo4j.Driver, label: str, prop: str, dataset: str, gen: int, ids: Sequence[str], values: Sequence[Any],
    database: str, progress: Callable[[int], None] | None = None, as_list: bool = False,
) -> int:
    """``SET n.<prop> = value`` for ``(id, value)`` pairs, ``UNWIND`` in chunks of :data:`CHUNK_SIZE`
    (``as_list``: each value is a vector, converted to a list of floats chunk by chunk)."""
    if label not in VECTOR_LABELS:
        raise InvalidArgumentError(f"label {label!r} cannot carry embeddings")
    check_prop(prop)
    query = Q_WRITE_VECTORS.format(label=label, prop=prop)
    written = 0
    for start in range(0, len(ids), CHUNK_SIZE):
        rows = [{"id": str(i), "v": [float(x) for x in v] if as_list else v}
                for i, v in zip(ids[start:start + CHUNK_SIZE], values[start:start + CHUNK_SIZE])]
        summary = write(driver, query, {"rows": rows, "dataset": dataset, "gen": gen}, database)
        written += summary.counters.properties_set
        if progress:
            progress(len(rows))
    return written


def _remove_prop(driver: neo4j.Driver, label: str, prop: str, database: str, batch: int = 5000) -> None:
    if label not in VECTOR_LABELS:
        raise InvalidArgumentError(f"label {label!r} cannot carry embeddings")
    query = Q_REMOVE_PROP_BATCH.format(label=label, prop=check_prop(prop))
    while True:
        summary = write(driver, query, {"batch": batch}, database)
        if summary.counters.properties_set == 0:
            return


def drop_model(driver: neo4j.Driver, info: ModelInfo | dict[str, Any], database: str = "neo4j") -> None:
    """Drop a (non-active) publication: its vector index and its properties."""
    d = info.model_dump() if isinstance(info, ModelInfo) else dict(info)
    for key in ("item_index", "text_index"):
        if d.get(key):
            write(driver, Q_DROP_INDEX.format(index=check_index(d[key])), {}, database)
    for label, key in PROP_KINDS:
        if d.get(key):
            _remove_prop(driver, label, d[key], database)
    if d.get("tag"):
        _delete_model_rels(driver, str(d["tag"]), database)


Q_DELETE_MODEL_RELS_BATCH = """
MATCH (:Item)-[r:`{rel}`]->(:Item) WHERE r.tag = $tag
WITH r LIMIT $batch
DELETE r
RETURN count(r) AS c
"""


def _delete_model_rels(driver: neo4j.Driver, tag: str, database: str, batch: int = 20_000) -> None:
    """Delete the item-item relationships publication ``tag`` wrote (graph.schema.MODEL_RELS), in batches."""
    from graph.schema import MODEL_RELS

    for rel in MODEL_RELS:
        query = Q_DELETE_MODEL_RELS_BATCH.format(rel=rel)
        while write(driver, query, {"tag": tag, "batch": batch}, database).counters.relationships_deleted:
            pass


def publish(
    driver: neo4j.Driver,
    embeddings: EmbeddingSetLike,
    dataset: str,
    *,
    database: str = "neo4j",
    checkpoint: str | None = None,
    cold_item_vectors: Callable[[list[str]], np.ndarray] | None = None,
    text_vectors: Callable[[list[str], list[str]], np.ndarray] | None = None,
    score_fusion: ServingFusionLike | None = None,
    serving_list_size: int = DEFAULT_LIST_SIZE,
    index_timeout_s: float = 600.0,
    grace_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
    min_coverage: float | None = None,
) -> PublishReport:
    """Write a model's embeddings into the graph, index them and make the model active.

    Steps: write ``emb_<tag>`` on users and items of the active generation (items augmented for
    MIPS, users with a 0), give items the model has no vector for a vector from their text
    (``cold_item_vectors``), optionally store text vectors for semantic explanations, build the
    cosine vector index and wait for it, flip the ``(:ActiveModel)`` pointer in one transaction,
    then drop the previous publication. Until the flip readers keep using the previous model.

    Args:
        driver (neo4j.Driver): Open driver (owned by the caller).
        embeddings (EmbeddingSetLike): ``model_version``, ``user_ids``, ``user_vectors``, ``item_ids``, ``item_vectors``.
        dataset (str): Dataset name (``(:Dataset {name})``).
        database (str, optional): Neo4j database. (default: ``"neo4j"``)
        checkpoint (str, optional): Checkpoint path, stored on the pointer so the API can load the
            cold-start projection of the same model.
        cold_item_vectors (callable, optional): ``texts -> [n, d]`` vectors in the model's space
            (``ColdStart.item_vectors``) for items without a model vector.
        text_vectors (callable, optional): ``(item_ids, texts) -> [n, t]`` text-encoder vectors of the items.
        score_fusion (ServingFusionLike, optional): Per-user statistics and profiles, per-item
            popularity and the weights of the checkpoint's score-level fusion
            (``gnn.fusion.serving.serving_fusion_from_checkpoint``); needs ``text_vectors``. When
            given, :func:`graph.recommend.recommend` re-ranks exactly like the offline evaluation.
        serving_list_size (int, optional): Write every user's best ``N`` unseen items under the
            served ranking (:mod:`graph.serving_lists`), which requests then filter instead of
            searching the indexes; 0 writes none. (default: ``200``)
        index_timeout_s (float, optional): How long to wait for the index to come online.
        grace_s (float, optional): Pause between the flip and dropping the previous model, so that
            queries that read the old pointer just before the flip finish.
        progress (callable, optional): Called with the number of rows of each written batch.
        min_coverage (float, optional): Refuse (before writing anything) a model whose item ids cover less
            than this share of the active generation's items (:func:`item_coverage`). (default: no check)

    Returns:
        PublishReport: What was written.

    Raises:
        InvalidArgumentError: Shapes, ids or values are wrong.
        NotFoundError: The dataset is not loaded.
        CoverageTooLowError: The model's items cover less than ``min_coverage`` of the active generation.
    """
    t0 = time.perf_counter()
    users = _as_matrix(embeddings.user_vectors, "user_vectors")
    items = _as_matrix(embeddings.item_vectors, "item_vectors")
    user_ids = [str(u) for u in embeddings.user_ids]
    item_ids = [str(i) for i in embeddings.item_ids]
    if users.shape[0] != len(user_ids) or items.shape[0] != len(item_ids):
        raise InvalidArgumentError("ids and vectors differ in length")
    if users.shape[1] != items.shape[1]:
        raise InvalidArgumentError(f"user and item vectors differ in dimension ({users.shape[1]} vs {items.shape[1]})")
    if len(set(item_ids)) != len(item_ids) or len(set(user_ids)) != len(user_ids):
        raise InvalidArgumentError("duplicate ids in the embedding set")
    version = str(embeddings.model_version)
    gen = active_gen(driver, dataset, database)

    # Items of the active generation the model does not know: cold items, vectors from text.
    graph_items = {r["id"]: r["text"] for r in read(driver, Q_ITEMS_OF_GEN, {"dataset": dataset, "gen": gen}, database)}
    known = set(item_ids)
    check_coverage(known, graph_items, min_coverage, version=version, dataset=dataset)
    cold_ids = [i for i in graph_items if i not in known and graph_items[i]]  # cold items need a text to embed
    n_cold = 0
    if cold_ids and cold_item_vectors is not None:
        cold = _as_matrix(cold_item_vectors([graph_items[i] for i in cold_ids]), "cold item vectors")
        if cold.shape != (len(cold_ids), items.shape[1]):
            raise InvalidArgumentError(f"cold-start vectors have shape {cold.shape}, expected {(len(cold_ids), items.shape[1])}")
        item_ids = item_ids + cold_ids
        items = np.vstack([items, cold])
        n_cold = len(cold_ids)

    tag = make_tag(dataset, version)
    item_prop, user_prop = prop_name("emb", tag), prop_name("emb", tag)
    index = check_index(f"graphrec_item_{tag}")
    aug_items, max_norm = augment_items(items)
    aug_users = augment_users(users)
    dim = int(aug_items.shape[1])
    if not 1 <= dim <= 4096:
        raise InvalidArgumentError(f"vector dimension {dim} is outside Neo4j's 1..4096")
    if score_fusion is not None:
        _check_fusion(score_fusion, text_vectors is not None)
    fusion_props: dict[str, Any] = {k: None for k in (
        "text_index", "fusion_prop", "profile_prop", "pop_prop", "fusion_bounds", "fusion_weights", "pop_mean", "pop_std", "fusion_popular",
        "pop_floor")}
    fusion_report: dict[str, Any] | None = None

    try:
        n_users_written = _write_vectors(driver, "User", user_prop, dataset, gen, user_ids, aug_users, database, progress)
        n_items_written = _write_vectors(driver, "Item", item_prop, dataset, gen, item_ids, aug_items, database, progress)
        text_prop: str | None = None
        n_text = 0
        # only items with a text or a title get a text vector (none at all: no semantic reasons, no content fusion)
        t_ids: list[str] = [i for i in item_ids if graph_items.get(i)] if text_vectors is not None else []
        if text_vectors is not None and t_ids:
            tv = _as_matrix(text_vectors(t_ids, [graph_items[i] for i in t_ids]), "text vectors")
            text_prop = prop_name("txt", tag)
            n_text = _write_vectors(driver, "Item", text_prop, dataset, gen, t_ids, tv, database, progress)
        fused = score_fusion if score_fusion is not None and text_prop is not None else None
        if fused is not None:
            fusion_props, fusion_report = _write_fusion(driver, fused, tag, text_prop, int(tv.shape[1]), dataset, gen, database, progress)
        top_props: dict[str, Any] = {"top_prop": None, "top_size": None}
        n_lists = 0
        if serving_list_size > 0:
            lists = compute_serving_lists(user_ids, users, item_ids, items, seen_items(driver, dataset, gen, database), serving_list_size,
                                          fusion=fused, text_ids=t_ids if fused is not None else (),
                                          text_vectors=tv if fused is not None else None)
            top_props = {"top_prop": prop_name("top", tag), "top_size": int(serving_list_size)}
            n_lists = _write_values(driver, "User", top_props["top_prop"], dataset, gen, list(lists), list(lists.values()), database, progress)
        write(driver, Q_CREATE_INDEX.format(index=index, prop=item_prop), {"dim": dim}, database)
        for idx in (index, fusion_props["text_index"]):
            if idx:
                write(driver, Q_AWAIT_INDEX, {"index": idx, "timeout": int(index_timeout_s)}, database)
    except BaseException:
        # leave nothing half-published behind; the previous model keeps serving
        try:
            drop_model(driver, _tag_props(tag), database)
        except Exception:  # pragma: no cover - best effort cleanup
            log.warning("could not clean up the failed publication %s", tag, exc_info=True)
        raise

    props = {
        "dataset": dataset, "version": version, "tag": tag, "dim": dim, "max_norm": max_norm, "kind": "embedding",
        "in_prop": None, "alpha": None, "gamma": None, "popular": None,
        "item_prop": item_prop, "user_prop": user_prop, "text_prop": text_prop, "item_index": index, **fusion_props, **top_props,
        "n_users": len(user_ids), "n_items": len(item_ids), "gen": gen, "checkpoint": checkpoint,
        "published_at": utc_now_iso(),
    }
    rows = read(driver, "RETURN 1 AS ok", {}, database)  # fail fast if the server went away
    if not rows:  # pragma: no cover
        raise QueryError("Neo4j did not answer")
    write(driver, Q_CREATE_PROPERTY_TOKENS, {"names": sorted(props)}, database)
    switched = write_switch(driver, props, database)
    previous = switched.get("previous") or None
    if previous and previous.get("tag") and previous.get("tag") != tag:
        time.sleep(grace_s)
        drop_model(driver, previous, database)
    # any orphaned publications of this dataset (a crashed publish) go as well
    in_use: set[str] = set()
    for r in read(driver, "MATCH (m:ActiveModel) RETURN m.item_index AS index, m.text_index AS text_index", {}, database):
        in_use.update(x for x in (r["index"], r["text_index"]) if x)
    mine = {index, fusion_props["text_index"], *(((previous or {}).get(k) for k in ("item_index", "text_index")))}
    for row in read(driver, Q_LIST_INDEXES, {}, database):
        name = row["name"]
        for prefix in ("graphrec_item_", "graphrec_text_"):
            if name.startswith(f"{prefix}{_SAFE.sub('_', dataset)}_") and name not in in_use and name not in mine:
                orphan_tag = name[len(prefix):]
                if _TAG_RE.match(orphan_tag):
                    drop_model(driver, _tag_props(orphan_tag), database)
    info = ModelInfo.model_validate({k: v for k, v in props.items() if k not in ("fusion_popular", "pop_floor")})
    return PublishReport(
        model=info, users_written=n_users_written, items_written=n_items_written, cold_items=n_cold,
        items_without_vector=len([i for i in graph_items if i not in set(item_ids)]), text_vectors=n_text,
        score_fusion=fusion_report, serving_lists=n_lists, previous_tag=(previous or {}).get("tag"), seconds=time.perf_counter() - t0,
    )


def _tag_props(tag: str) -> dict[str, str]:
    """Every index and property name publication ``tag`` may have written (for cleanup)."""
    return {"item_index": f"graphrec_item_{tag}", "text_index": f"graphrec_text_{tag}", "item_prop": f"emb_{tag}",
            "user_prop": f"emb_{tag}", "text_prop": f"txt_{tag}", "pop_prop": f"pop_{tag}", "profile_prop": f"prof_{tag}",
            "fusion_prop": f"fus_{tag}", "top_prop": f"top_{tag}", "in_prop": f"fin_{tag}", "tag": tag}


def _check_fusion(f: ServingFusionLike, have_text: bool) -> None:
    nU, nI, nB = len(f.user_ids), len(f.item_ids), len(f.bounds) + 1
    w = np.asarray(f.weights, dtype=np.float64)
    if w.shape != (nB, 3) or (w < 0).any() or not np.isfinite(w).all():
        raise InvalidArgumentError(f"score-fusion weights must be {nB} non-negative (graph, content, popularity) rows, got shape {w.shape}")
    if np.asarray(f.user_stats).shape != (nU, 4) or len(f.history_sizes) != nU or np.asarray(f.profiles).shape[0] != nU:
        raise InvalidArgumentError("score-fusion user tables do not match its user ids")
    if len(f.popularity) != nI:
        raise InvalidArgumentError("score-fusion popularity does not match its item ids")
    if not have_text:
        raise InvalidArgumentError("score fusion needs the items' text vectors (the content score); publish with text vectors")


def _write_fusion(
    driver: neo4j.Driver, f: ServingFusionLike, tag: str, text_prop: str, text_dim: int, dataset: str, gen: int, database: str,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the score-fusion tables of publication ``tag``; returns the pointer properties and a summary."""
    fusion_prop, profile_prop, pop_prop = prop_name("fus", tag), prop_name("prof", tag), prop_name("pop", tag)
    text_index = check_index(f"graphrec_text_{tag}")
    stats = np.asarray(f.user_stats, dtype=np.float64)
    sizes = np.asarray(f.history_sizes, dtype=np.float64)
    users = [str(u) for u in f.user_ids]
    rows = [[float(x) for x in s] + [float(h)] for s, h in zip(stats, sizes)]
    n_stats = _write_values(driver, "User", fusion_prop, dataset, gen, users, rows, database, progress)
    prof = np.asarray(f.profiles, dtype=np.float64)
    keep = np.flatnonzero(np.linalg.norm(prof, axis=1) > 0)  # empty history: no profile, content part 0
    n_prof = _write_vectors(driver, "User", profile_prop, dataset, gen, [users[j] for j in keep], prof[keep], database, progress)
    pop = np.asarray(f.popularity, dtype=np.float64)
    n_pop = _write_values(driver, "Item", pop_prop, dataset, gen, [str(i) for i in f.item_ids], [float(x) for x in pop], database, progress)
    write(driver, Q_CREATE_INDEX.format(index=text_index, prop=text_prop), {"dim": text_dim}, database)
    weights = np.asarray(f.weights, dtype=np.float64)
    props = {
        "text_index": text_index, "fusion_prop": fusion_prop, "profile_prop": profile_prop, "pop_prop": pop_prop,
        "fusion_bounds": [int(b) for b in f.bounds], "fusion_weights": [float(x) for x in weights.reshape(-1)],
        "pop_mean": float(f.pop_mean), "pop_std": float(f.pop_std), "fusion_popular": [str(i) for i in f.popular_ids(POPULAR_IDS)],
        "pop_floor": float(np.sort(pop)[::-1][min(POPULAR_IDS, len(pop)) - 1]) if len(pop) else 0.0,
    }
    report = {"users_with_stats": n_stats, "profiles": n_prof, "items_with_popularity": n_pop, "bounds": props["fusion_bounds"],
              "weights": weights.tolist(), "text_index": text_index}
    return props, report


def write_switch(driver: neo4j.Driver, props: dict[str, Any], database: str = "neo4j") -> dict[str, Any]:
    """Flip the ``(:ActiveModel)`` pointer to ``props`` in one transaction; returns the previous state."""
    rows, _, _ = _execute_write(driver, Q_SWITCH, {"dataset": props["dataset"], "props": props}, database)
    if not rows:
        return {}
    return {"previous_tag": rows[0]["previous_tag"], "previous": rows[0]["previous"] if rows[0]["previous_tag"] else None}


def _execute_write(driver: neo4j.Driver, query: str, params: dict[str, Any], database: str) -> tuple[list[Any], Any, Any]:
    from neo4j import RoutingControl
    from neo4j import exceptions as neo4j_exc

    from graph.connection import translate_error

    try:
        return driver.execute_query(query, params, database_=database, routing_=RoutingControl.WRITE)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e
