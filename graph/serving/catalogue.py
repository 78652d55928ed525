"""What an answer shows of its items (title, year, genres), read once per loaded catalogue and kept in the process.

Item details are catalogue data: only a load changes them, and every load ends by flipping the
``(:Dataset)`` node (a new ``gen`` for a ``replace``, a new ``loaded_at`` for an ``upsert``). A
process therefore keeps one :class:`Catalogue` per ``(database, dataset, gen, loaded_at)``; each
request reads ``gen`` and ``loaded_at`` with the user's history (:data:`graph.serving.live.Q_PLAN`),
so the answer after a load shows the new catalogue at once. Items the catalogue does not know (none
after a complete load) are read from the graph with :data:`Q_DETAILS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graph.serving.lru import LoadingLRU
from graph.serving.store import GraphStore

Q_CATALOGUE = """
MATCH (d:Dataset {name: $dataset})
MATCH (i:Item {dataset: $dataset, gen: d.gen})
RETURN d.gen AS gen, d.loaded_at AS loaded_at, i.id AS id, i.title AS title, i.year AS year,
       [(i)-[:HAS_GENRE]->(x:Genre) | x.name] AS genres
"""
"""Every item of the active generation with what an answer shows of it."""

Q_DETAILS = """
MATCH (d:Dataset {name: $dataset})
UNWIND $ids AS iid
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
RETURN i.id AS id, i.title AS title, i.year AS year, [(i)-[:HAS_GENRE]->(x:Genre) | x.name] AS genres
"""
"""What an answer shows of the items ``$ids`` (those the catalogue does not hold)."""

MAX_CATALOGUES = 2
"""Catalogues kept per process (the active one and the one before a load)."""

Details = dict[str, Any]
"""``{"id", "title", "year", "genres"}`` of one item (genres sorted)."""


def _details(row: Any) -> Details:
    return {"id": row["id"], "title": row["title"], "year": row["year"], "genres": sorted(row["genres"] or [])}


@dataclass(frozen=True)
class Catalogue:
    """The items of one loaded catalogue: ``(gen, loaded_at)`` of the ``(:Dataset)`` node when it was read."""

    gen: int
    loaded_at: str | None
    items: dict[str, Details]

    def details(self, store: GraphStore, ids: Sequence[str]) -> dict[str, Details]:
        """Details of ``ids`` (read from the graph for the ones this catalogue lacks; unknown ids are left out)."""
        out = {i: self.items[i] for i in ids if i in self.items}
        missing = [i for i in ids if i not in out]
        if missing:
            out.update({r["id"]: _details(r) for r in store.read(Q_DETAILS, {"ids": missing})})
        return out


class CatalogueCache:
    """Process-wide LRU of :class:`Catalogue` by ``(database, dataset, gen, loaded_at)``; thread-safe."""

    def __init__(self, size: int = MAX_CATALOGUES) -> None:
        self._lru: LoadingLRU[tuple[str, str, int, str | None], Catalogue] = LoadingLRU(size)

    def get(self, store: GraphStore, gen: int, loaded_at: str | None) -> Catalogue:
        """The catalogue of generation ``gen`` as loaded at ``loaded_at`` (read from the graph on first use).

        When a load flipped the dataset in between, the catalogue read is the newer one (stored under
        its own key); the items it lacks are read one by one by :meth:`Catalogue.details`.
        """
        return self._lru.get((store.database, store.dataset, gen, loaded_at), lambda: load_catalogue(store),
                             lambda c: (store.database, store.dataset, c.gen, c.loaded_at))

    def clear(self) -> None:
        """Forget every catalogue (tests)."""
        self._lru.clear()


def load_catalogue(store: GraphStore) -> Catalogue:
    """Read the active generation's items from the graph."""
    rows = store.read(Q_CATALOGUE)
    if not rows:
        return Catalogue(-1, None, {})
    return Catalogue(int(rows[0]["gen"]), rows[0]["loaded_at"], {r["id"]: _details(r) for r in rows})


CATALOGUES = CatalogueCache()
"""The process's cache (serving code uses this one)."""

__all__ = ["CATALOGUES", "Catalogue", "CatalogueCache", "Q_CATALOGUE", "Q_DETAILS", "load_catalogue"]
