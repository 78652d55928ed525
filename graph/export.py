"""Export a training snapshot (:mod:`graphrec.snapshot`) from the active generation of a dataset.

The snapshot holds every user and item of the generation (items with title, text, year and
attribute lists; tags ordered by how often they were applied), every ``INTERACTED`` relationship
(rating, timestamp, the data's own ``split``), and the split named by ``split`` applied by
:func:`graphrec.splits.apply_split`. Users and items are ordered by id (numerically when every
id is an integer, so LightGCN files keep their own indices). ``gnn/`` reads only snapshots.
"""

from __future__ import annotations

import neo4j
import numpy as np
import pandas as pd

from graph.connection import read
from graph.datasets import active_generation
from graph.schema import ATTRIBUTE_LABELS, ATTRIBUTE_RELS
from graph.stats import count_store
from graphrec.errors import LoadError
from graphrec.snapshot import Snapshot, SplitSpec, make_snapshot
from graphrec.splits import apply_split

USERS = "MATCH (u:`User` {dataset: $dataset, gen: $gen}) RETURN u.id AS id"


def items_query(types: set[str] | None = None) -> str:
    """The items query; attribute relationship types absent from ``types`` give empty lists (no server warnings)."""
    lists = []
    for column, label in ATTRIBUTE_LABELS.items():
        rel = ATTRIBUTE_RELS[column]
        if types is not None and rel not in types:
            lists.append(f"[] AS `{column}`")
        elif column == "tags":
            lists.append(
                f"COLLECT {{ MATCH (i)-[h:`{rel}`]->(a:`{label}`) RETURN a.name ORDER BY coalesce(h.count, 0) DESC, a.name }} AS `{column}`"
            )
        else:
            lists.append(f"COLLECT {{ MATCH (i)-[:`{rel}`]->(a:`{label}`) RETURN a.name ORDER BY a.name }} AS `{column}`")
    return (
        "MATCH (i:`Item` {dataset: $dataset, gen: $gen}) "
        "RETURN i.id AS id, i.title AS title, i.text AS text, i.year AS year, " + ", ".join(lists)
    )



INTERACTIONS = """
MATCH (u:`User` {dataset: $dataset, gen: $gen})
CALL (u) {
  MATCH (u)-[r:`INTERACTED`]->(i:`Item`)
  WHERE i.gen = $gen AND i.dataset = $dataset
  RETURN collect(i.id) AS items, collect(r) AS rels
}
WITH u, items, rels WHERE size(items) > 0
RETURN u.id AS user, items, [x IN rels | x.rating] AS ratings, [x IN rels | x.ts] AS ts, [x IN rels | x.split] AS splits
"""


def _ordered(ids: list[str]) -> list[str]:
    """Ids sorted numerically when all are integers, else as text."""
    if ids and all(s.isdigit() for s in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def read_generation(driver: neo4j.Driver, dataset: str, gen: int, database: str = "neo4j") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read users, items and interactions (external ids) of one generation.

    Returns:
        ``users`` (id), ``items`` (id, title, text, year, genres, tags, categories, brands) and
        ``interactions`` (user_id, item_id, rating, timestamp, split) frames.
    """
    params = {"dataset": dataset, "gen": gen}
    users = pd.DataFrame({"id": _ordered([r["id"] for r in read(driver, USERS, params, database)])})
    _, rel_types = count_store(driver, database)
    item_records = read(driver, items_query(set(rel_types)), params, database)
    items = pd.DataFrame(
        {
            "id": [r["id"] for r in item_records],
            "title": [r["title"] or "" for r in item_records],
            "text": [r["text"] or "" for r in item_records],
            "year": pd.array([r["year"] for r in item_records], dtype="Int64"),
            **{c: [list(r[c]) for r in item_records] for c in ATTRIBUTE_LABELS},
        }
    )
    order = _ordered(items["id"].tolist())
    items = items.set_index("id").loc[order].reset_index()

    u_ids: list[str] = []
    i_ids: list[str] = []
    ratings: list[float | None] = []
    stamps: list[int | None] = []
    splits: list[str | None] = []
    for r in read(driver, INTERACTIONS, params, database):
        n = len(r["items"])
        u_ids.extend([r["user"]] * n)
        i_ids.extend(r["items"])
        ratings.extend(r["ratings"])
        stamps.extend(r["ts"])
        splits.extend(r["splits"])
    rating = np.array([np.nan if v is None else float(v) for v in ratings], dtype=np.float64)
    ts = np.array([-1 if v is None else int(v) for v in stamps], dtype=np.int64)
    inter = pd.DataFrame({"user_id": u_ids, "item_id": i_ids, "rating": rating, "timestamp": ts, "split": pd.Series(splits, dtype=object)})
    return users, items, inter


def export_snapshot(
    driver: neo4j.Driver,
    dataset: str,
    split: SplitSpec,
    database: str = "neo4j",
    seed: int | None = None,
) -> Snapshot:
    """Build a :class:`~graphrec.snapshot.Snapshot` of the active generation of ``dataset``.

    Args:
        driver: An open driver (the caller owns it).
        dataset: Dataset name.
        split: Named split and its params (see :mod:`graphrec.splits`). ``fixed`` keeps the
            data's own train/test labels (interactions without one, e.g. feedback, count as train).
        database: Database name.
        seed: Split seed (default: ``split.params['seed']`` or 0); recorded in the manifest.

    Raises:
        NotFoundError: The dataset is not loaded.
        LoadError: A reload replaced the generation while it was being read (retry).
        InvalidArgumentError, DataError: The split does not fit the data.
    """
    gen = active_generation(driver, dataset, database)
    users, items, inter = read_generation(driver, dataset, gen, database)
    if active_generation(driver, dataset, database) != gen:
        raise LoadError(f"dataset {dataset!r} was reloaded while the snapshot was read; run the export again")
    frame = pd.DataFrame(
        {
            "user_idx": pd.Index(users["id"]).get_indexer(inter["user_id"]).astype(np.int64),
            "item_idx": pd.Index(items["id"]).get_indexer(inter["item_id"]).astype(np.int64),
            "rating": inter["rating"].to_numpy(),
            "timestamp": inter["timestamp"].to_numpy(),
        }
    )
    own = inter["split"]
    if own.notna().any():
        frame["split"] = own.where(own.notna(), "train").astype(str).to_numpy()
    params = dict(split.params)
    used_seed = int(seed if seed is not None else params.get("seed", 0))
    params["seed"] = used_seed
    spec = SplitSpec(name=split.name, params=params)
    labelled = apply_split(frame, spec, seed=used_seed)
    return make_snapshot(dataset=dataset, source="neo4j", split=spec, users=users, items=items, interactions=labelled)
