"""A small synthetic graph plus random embeddings, for tests and quick checks of the query layer.

It follows the team's graph model (``Dataset``, ``User``, ``Item``, ``Genre``, ``INTERACTED``,
``HAS_GENRE``) but is written directly with Cypher, so the query layer can be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import neo4j
import numpy as np

from graph.connection import write

GENRES = ("Action", "Comedy", "Crime", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller")

Q_CLEAR = "MATCH (n) WHERE n.dataset = $dataset DETACH DELETE n"
Q_DATASET = "MERGE (d:Dataset {name: $dataset}) SET d.gen = $gen, d.loaded_at = datetime()"
Q_ITEMS = """
UNWIND $rows AS row
CREATE (i:Item {dataset: $dataset, gen: $gen, id: row.id, title: row.title, year: row.year, text: row.text})
WITH i, row
UNWIND row.genres AS gname
MERGE (g:Genre {dataset: $dataset, gen: $gen, name: gname})
CREATE (i)-[:HAS_GENRE]->(g)
"""
Q_USERS = "UNWIND $ids AS id CREATE (:User {dataset: $dataset, gen: $gen, id: id})"
Q_INTERACTIONS = """
UNWIND $rows AS row
MATCH (u:User {dataset: $dataset, gen: $gen, id: row.u})
MATCH (i:Item {dataset: $dataset, gen: $gen, id: row.i})
CREATE (u)-[:INTERACTED {rating: row.r, ts: row.ts, split: 'train', source: 'load'}]->(i)
"""


@dataclass
class ToyEmbeddings:
    """Random embeddings in the shape of ``gnn``'s ``EmbeddingSet``."""

    model_version: str
    user_ids: list[str]
    user_vectors: np.ndarray
    item_ids: list[str]
    item_vectors: np.ndarray
    extra: dict[str, object] = field(default_factory=dict)


def load_toy_graph(
    driver: neo4j.Driver, dataset: str = "toy", n_users: int = 30, n_items: int = 80, per_user: int = 12, seed: int = 0, database: str = "neo4j",
) -> dict[str, object]:
    """Replace ``dataset`` with a random graph; returns its users, items and interactions."""
    rng = np.random.default_rng(seed)
    write(driver, Q_CLEAR, {"dataset": dataset}, database)
    write(driver, Q_DATASET, {"dataset": dataset, "gen": 1}, database)
    items = []
    for j in range(n_items):
        gs = sorted(set(rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False).tolist()))
        items.append({"id": f"i{j}", "title": f"Movie {j}", "year": int(1970 + rng.integers(0, 50)),
                      "genres": gs, "text": f"Movie {j}: a {' '.join(gs).lower()} film"})
    write(driver, Q_ITEMS, {"dataset": dataset, "gen": 1, "rows": items}, database)
    users = [f"u{j}" for j in range(n_users)]
    write(driver, Q_USERS, {"dataset": dataset, "gen": 1, "ids": users}, database)
    rows = []
    # popularity skew so some items are shared by many users (collaborative paths exist)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    for u in users:
        for j in rng.choice(n_items, size=per_user, replace=False, p=p):
            rows.append({"u": u, "i": f"i{int(j)}", "r": float(rng.integers(1, 11)) / 2.0, "ts": int(1_000_000 + rng.integers(0, 10_000))})
    write(driver, Q_INTERACTIONS, {"dataset": dataset, "gen": 1, "rows": rows}, database)
    return {"users": users, "items": items, "interactions": rows}


def random_embeddings(users: list[str], item_ids: list[str], dim: int = 8, seed: int = 0, version: str = "rand-v1") -> ToyEmbeddings:
    """Random user/item vectors (items with varying norms, so the MIPS reduction matters)."""
    rng = np.random.default_rng(seed)
    uv = rng.normal(size=(len(users), dim))
    iv = rng.normal(size=(len(item_ids), dim)) * rng.uniform(0.3, 2.0, size=(len(item_ids), 1))
    return ToyEmbeddings(model_version=version, user_ids=list(users), user_vectors=uv, item_ids=list(item_ids), item_vectors=iv)
