"""The item tables of a live publication, kept in the serving process.

A publication (its ``tag``) never changes after it is written, so a process may keep its item
factors and popularity in memory and use them for every request: a user's low-rank query vector is
the sum of their history items' in-factors, and a candidate's low-rank score the dot product with
its out-factor. Users' histories are always read from the graph at request time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from graph.serving.store import GraphStore

Q_LIVE_TABLES = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset}) WHERE m.tag = $tag
MATCH (i:Item {dataset: $dataset, gen: d.gen})
WHERE i[m.pop_prop] IS NOT NULL OR i[m.in_prop] IS NOT NULL
RETURN i.id AS id, i[m.in_prop] AS fin, i[m.item_prop] AS fout, i[m.pop_prop] AS pop
"""

MAX_TABLES = 4


@dataclass
class LiveTables:
    """One publication's item tables (rows follow ``ids``)."""

    tag: str
    ids: list[str]
    row: dict[str, int]
    in_factors: np.ndarray | None
    out_factors: np.ndarray | None
    popularity: np.ndarray
    pop_desc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pop_order: list[str] = field(default_factory=list)

    def query_vector(self, history: list[str]) -> np.ndarray | None:
        """Sum of the history items' in-factors (``None`` without a low-rank part)."""
        if self.in_factors is None:
            return None
        rows = [self.row[h] for h in history if h in self.row]
        if not rows:
            return np.zeros(self.in_factors.shape[1], np.float32)
        return self.in_factors[rows].sum(axis=0, dtype=np.float64).astype(np.float32)

    def dots(self, q: np.ndarray | None, ids: list[str]) -> np.ndarray:
        """``q . out_i`` for ``ids`` (0 for items without factors)."""
        out = np.zeros(len(ids), np.float64)
        if q is None or self.out_factors is None:
            return out
        rows = np.array([self.row.get(i, -1) for i in ids], dtype=np.int64)
        ok = rows >= 0
        out[ok] = self.out_factors[rows[ok]].astype(np.float64) @ q.astype(np.float64)
        return out

    def pops(self, ids: list[str]) -> np.ndarray:
        """Popularity of ``ids`` (0 for unknown items)."""
        return np.array([self.popularity[self.row[i]] if i in self.row else 0.0 for i in ids], dtype=np.float64)


class TableCache:
    """Process-wide LRU of :class:`LiveTables` by (database, dataset, tag); thread-safe."""

    def __init__(self, size: int = MAX_TABLES) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._tables: OrderedDict[tuple[str, str, str], LiveTables] = OrderedDict()

    def get(self, store: GraphStore, tag: str) -> LiveTables:
        key = (store.database, store.dataset, tag)
        with self._lock:
            hit = self._tables.get(key)
            if hit is not None:
                self._tables.move_to_end(key)
                return hit
            tables = load_tables(store, tag)
            self._tables[key] = tables
            while len(self._tables) > self._size:
                self._tables.popitem(last=False)
            return tables

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()


def load_tables(store: GraphStore, tag: str) -> LiveTables:
    """Read publication ``tag``'s item tables from the graph."""
    rows = store.read(Q_LIVE_TABLES, {"tag": tag})
    ids = [r["id"] for r in rows]
    have_factors = bool(rows) and any(r["fin"] is not None for r in rows)
    fin = fout = None
    if have_factors:
        dim = len(next(r["fin"] for r in rows if r["fin"] is not None))
        fin = np.zeros((len(rows), dim), np.float32)
        fout = np.zeros((len(rows), dim), np.float32)
        for k, r in enumerate(rows):
            if r["fin"] is not None:
                fin[k] = r["fin"]
                fout[k] = r["fout"][:-1]  # drop the MIPS augmentation
    pop = np.array([r["pop"] or 0.0 for r in rows], dtype=np.float32)
    order = np.argsort(-pop, kind="stable")
    return LiveTables(tag=tag, ids=ids, row={i: k for k, i in enumerate(ids)}, in_factors=fin, out_factors=fout, popularity=pop,
                      pop_desc=pop[order], pop_order=[ids[k] for k in order])


TABLES = TableCache()
"""The process's cache (serving code uses this one)."""
