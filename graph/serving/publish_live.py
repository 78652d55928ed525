"""Publish a live model (:class:`gnn.live.LiveForm`) into the graph and make it active.

What a live publication ``tag`` writes on the items of the dataset's active generation:

* ``Item.fin_<tag>``: the in-factors :math:`\\mathbf{P}_i` (a user's low-rank query is their sum);
* ``Item.emb_<tag>``: the out-factors :math:`\\mathbf{Q}_i`, MIPS-augmented (see
  :mod:`graph.embeddings`) behind the cosine vector index ``graphrec_item_<tag>``;
* ``Item.pop_<tag>``: popularity :math:`p_i`;
* ``(:Item)-[:NEIGHBOUR {tag, w}]->(:Item)``: the nonzeros of :math:`\\mathbf{W}` (each item's
  strongest neighbours), the live score's linear part and the explanation paths;
* ``Item.txt_<tag>`` and the index ``graphrec_text_<tag>`` when text vectors are given (text cold start).

Then the ``(:ActiveModel)`` pointer flips in one transaction (``kind: 'live'``, ``alpha``,
``gamma``, the property and index names) and the previous publication is dropped. Until the flip
readers keep using the previous model. Nothing about users is written: users are scored from
their history at request time (:mod:`graph.serving.live`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, Field

from graph.connection import read, write
from graph.embeddings import (
    Q_AWAIT_INDEX,
    Q_CREATE_INDEX,
    Q_CREATE_PROPERTY_TOKENS,
    Q_ITEMS_OF_GEN,
    ModelInfo,
    _tag_props,
    _write_values,
    _write_vectors,
    active_gen,
    augment_items,
    check_index,
    check_coverage,
    drop_model,
    make_tag,
    prop_name,
    write_switch,
)
from graph.schema import NEIGHBOUR
from graph.serving.store import GraphStore
from graphrec.clock import utc_now_iso
from graphrec.errors import InvalidArgumentError



class LiveForm(Protocol):
    """What :func:`publish_live` reads of a live form (:class:`gnn.live.LiveForm` has it; ``graph`` does not import ``gnn``)."""

    neighbours: sp.csr_matrix
    in_factors: np.ndarray | None
    out_factors: np.ndarray | None
    alpha: float
    popularity: np.ndarray | None
    gamma: float

    @property
    def num_items(self) -> int: ...  # noqa: D102

    @property
    def top_k(self) -> int: ...  # noqa: D102

log = logging.getLogger(__name__)

EDGE_CHUNK = 20_000
"""Neighbour relationships per write transaction."""

Q_WRITE_NEIGHBOURS = f"""
UNWIND $rows AS row
MATCH (a:Item {{dataset: $dataset, gen: $gen, id: row.s}})
UNWIND range(0, size(row.d) - 1) AS k
MATCH (b:Item {{dataset: $dataset, gen: $gen, id: row.d[k]}})
CREATE (a)-[:`{NEIGHBOUR}` {{tag: $tag, w: row.w[k]}}]->(b)
"""

LEGACY_KEYS = ("user_prop", "top_prop", "top_size", "fusion_prop", "profile_prop", "fusion_bounds", "fusion_weights", "pop_mean",
               "pop_std", "fusion_popular", "pop_floor")
"""Pointer keys of embedding publications, cleared when a live model becomes active."""


class LivePublishReport(BaseModel):
    """Summary of one :func:`publish_live` call."""

    model: ModelInfo
    items_with_factors: int
    neighbour_relationships: int
    items_missing: int = Field(description="Model items not in the active generation (skipped).")
    items_unknown_to_model: int = Field(description="Items of the active generation the model has no row for.")
    text_vectors: int
    previous_tag: str | None
    seconds: float


def _neighbour_rows(form: LiveForm, ids: Sequence[str], present: np.ndarray) -> list[tuple[dict[str, Any], int]]:
    w = form.neighbours.tocsr()
    rows: list[tuple[dict[str, Any], int]] = []
    for j in np.flatnonzero(present):
        lo, hi = w.indptr[j], w.indptr[j + 1]
        cols, vals = w.indices[lo:hi], w.data[lo:hi]
        keep = present[cols]
        if keep.any():
            rows.append(({"s": ids[j], "d": [ids[c] for c in cols[keep]], "w": [float(v) for v in vals[keep]]}, int(keep.sum())))
    return rows


def _write_neighbours(store: GraphStore, rows: list[tuple[dict[str, Any], int]], tag: str, gen: int,
                      progress: Callable[[int], None] | None) -> int:
    written, batch, size = 0, [], 0
    for row, n in rows + [({}, -1)]:
        if n < 0 or (size + n > EDGE_CHUNK and batch):
            if batch:
                summary = write(store.driver, Q_WRITE_NEIGHBOURS, {"rows": batch, "dataset": store.dataset, "gen": gen, "tag": tag},
                                store.database)
                written += summary.counters.relationships_created
                if progress:
                    progress(size)
            batch, size = [], 0
        if n >= 0:
            batch.append(row)
            size += n
    return written


def publish_live(
    store: GraphStore,
    form: LiveForm,
    item_ids: Sequence[str],
    *,
    version: str,
    checkpoint: str | None = None,
    text_vectors: Callable[[list[str], list[str]], np.ndarray] | None = None,
    index_timeout_s: float = 600.0,
    grace_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
    min_coverage: float | None = None,
) -> LivePublishReport:
    """Write a live form into the active generation, index it and make it the active model.

    Args:
        store (GraphStore): Where to publish.
        form (LiveForm): The fitted live form (rows follow ``item_ids``).
        item_ids (Sequence[str]): External item ids of the form's rows.
        version (str): Model version (the checkpoint's).
        checkpoint (str, optional): Checkpoint path, stored on the pointer.
        text_vectors (callable, optional): ``(item_ids, texts) -> [n, t]`` text vectors of the items
            (for free-text cold start).
        index_timeout_s (float, optional): How long to wait for the vector indexes.
        grace_s (float, optional): Pause between the flip and dropping the previous publication.
        progress (callable, optional): Called with the number of rows of each written batch.
        min_coverage (float, optional): Refuse (before writing) a model whose items cover less than
            this share of the active generation's items. (default: no check)

    Raises:
        InvalidArgumentError: Ids and the form disagree.
        CoverageTooLowError: The model's items cover too little of the active generation.
    """
    t0 = time.perf_counter()
    ids = [str(i) for i in item_ids]
    if len(ids) != form.num_items or len(set(ids)) != len(ids):
        raise InvalidArgumentError(f"{len(ids)} item ids (unique: {len(set(ids))}) for a form of {form.num_items} items")
    driver, dataset, database = store.driver, store.dataset, store.database
    gen = active_gen(driver, dataset, database)
    graph_items = {r["id"]: r["text"] for r in read(driver, Q_ITEMS_OF_GEN, {"dataset": dataset, "gen": gen}, database)}
    check_coverage(ids, graph_items, min_coverage, version=version, dataset=dataset)
    present = np.array([i in graph_items for i in ids], dtype=bool)
    kept = [i for i, p in zip(ids, present) if p]
    tag = make_tag(dataset, version)
    names = {"item_prop": prop_name("emb", tag), "in_prop": prop_name("fin", tag), "pop_prop": prop_name("pop", tag)}
    index = check_index(f"graphrec_item_{tag}") if form.in_factors is not None else None
    text_prop = text_index = None
    dim, max_norm, n_text = 0, 0.0, 0
    try:
        n_factors = 0
        if form.in_factors is not None:
            aug, max_norm = augment_items(form.out_factors[present])  # type: ignore[index]
            dim = int(aug.shape[1])
            if not 1 <= dim <= 4096:
                raise InvalidArgumentError(f"factor dimension {dim} is outside Neo4j's 1..4096")
            _write_vectors(driver, "Item", names["in_prop"], dataset, gen, kept, form.in_factors[present], database, progress)
            n_factors = _write_vectors(driver, "Item", names["item_prop"], dataset, gen, kept, aug, database, progress)
        pop = form.popularity if form.popularity is not None else np.zeros(form.num_items, np.float32)
        _write_values(driver, "Item", names["pop_prop"], dataset, gen, kept, [float(x) for x in pop[present]], database, progress)
        n_edges = _write_neighbours(store, _neighbour_rows(form, ids, present), tag, gen, progress)
        if text_vectors is not None:
            t_ids = [i for i in graph_items if graph_items[i]]
            if t_ids:
                tv = np.asarray(text_vectors(t_ids, [graph_items[i] for i in t_ids]), dtype=np.float32)
                text_prop, text_index = prop_name("txt", tag), check_index(f"graphrec_text_{tag}")
                n_text = _write_vectors(driver, "Item", text_prop, dataset, gen, t_ids, tv, database, progress)
                write(driver, Q_CREATE_INDEX.format(index=text_index, prop=text_prop), {"dim": int(tv.shape[1])}, database)
        if index is not None:
            write(driver, Q_CREATE_INDEX.format(index=index, prop=names["item_prop"]), {"dim": dim}, database)
        for idx in (index, text_index):
            if idx:
                write(driver, Q_AWAIT_INDEX, {"index": idx, "timeout": int(index_timeout_s)}, database)
    except BaseException:
        try:
            drop_model(driver, _tag_props(tag), database)
        except Exception:  # pragma: no cover - best effort cleanup
            log.warning("could not clean up the failed live publication %s", tag, exc_info=True)
        raise
    props: dict[str, Any] = {
        **{k: None for k in LEGACY_KEYS},
        "dataset": dataset, "version": version, "tag": tag, "kind": "live", "dim": dim, "max_norm": float(max_norm),
        **names, "item_index": index, "text_prop": text_prop, "text_index": text_index,
        "alpha": float(form.alpha), "gamma": float(form.gamma), "n_users": 0, "n_items": len(kept), "gen": gen,
        "neighbours_top_k": form.top_k, "checkpoint": checkpoint, "published_at": utc_now_iso(),
    }
    write(driver, Q_CREATE_PROPERTY_TOKENS, {"names": sorted(props)}, database)
    switched = write_switch(driver, props, database)
    previous = switched.get("previous") or None
    if previous and previous.get("tag") and previous.get("tag") != tag:
        time.sleep(grace_s)
        drop_model(driver, {**_tag_props(str(previous["tag"])), **{k: v for k, v in previous.items() if v}}, database)
    return LivePublishReport(
        model=ModelInfo.model_validate(props), items_with_factors=n_factors, neighbour_relationships=n_edges,
        items_missing=int((~present).sum()), items_unknown_to_model=len(set(graph_items) - set(ids)), text_vectors=n_text,
        previous_tag=(previous or {}).get("tag"), seconds=round(time.perf_counter() - t0, 2),
    )


__all__ = ["LivePublishReport", "publish_live"]
