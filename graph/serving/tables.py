"""The tables of a live publication, read from the graph once and kept in the serving process.

A publication (its ``tag``) never changes after it is written, so a process may keep what it wrote
in memory: the items' in- and out-factors, their popularity and the ``NEIGHBOUR`` relationships as a
sparse matrix, all read from the graph (for the items of the dataset's active generation: a reload
that removes items gets new tables). Users' histories are always read from the graph at request
time; with these tables a request computes the live score of every item exactly:
``h W + alpha (h P) Q^T + gamma |h| p`` (:mod:`gnn.live`). The Browser can compute the same neighbour
part in Cypher, as a sum over ``(:User)-[:INTERACTED]->(:Item)-[:NEIGHBOUR]->(:Item)`` paths.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import scipy.sparse as sp

from graph.embeddings import ModelInfo
from graph.serving.lru import LoadingLRU
from graph.serving.store import GraphStore

log = logging.getLogger(__name__)

Q_LIVE_ITEMS = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset}) WHERE m.tag = $tag
MATCH (i:Item {dataset: $dataset, gen: d.gen})
WHERE i[m.pop_prop] IS NOT NULL OR i[m.in_prop] IS NOT NULL
RETURN d.gen AS gen, i.id AS id, i[m.in_prop] AS fin, i[m.item_prop] AS fout, i[m.pop_prop] AS pop
"""
"""The items of the active generation that publication ``tag`` covers, with their factors and popularity."""

Q_LIVE_NEIGHBOURS = """
MATCH (d:Dataset {name: $dataset})
MATCH (a:Item {dataset: $dataset, gen: d.gen})-[n:NEIGHBOUR]->(b:Item)
WHERE n.tag = $tag AND b.gen = d.gen
RETURN a.id AS a, collect(b.id) AS b, collect(n.w) AS w
"""
"""The publication's NEIGHBOUR relationships between items of the active generation, by source item."""

Q_NEIGHBOUR_DEGREES = """
MATCH (d:Dataset {name: $dataset})
MATCH (a:Item {dataset: $dataset, gen: d.gen})
RETURN d.gen AS gen, sum(COUNT { (a)-[:NEIGHBOUR]->() }) AS n
"""
"""How many NEIGHBOUR relationships leave the active generation's items (read from the degree store: no
relationship is read; every tag counts)."""

MAX_TABLES = 4


@dataclass
class LiveTables:
    """One publication's tables for one generation (rows follow ``ids``)."""

    tag: str
    gen: int
    ids: list[str]
    row: dict[str, int]
    in_factors: np.ndarray | None
    out_factors: np.ndarray | None
    popularity: np.ndarray
    neighbours: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0), dtype=np.float32))
    pop_desc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pop_order: list[str] = field(default_factory=list)
    id_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Position of each row's id in sorted id order (ties in a ranking break by id)."""
    incoming: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0), dtype=np.float32))
    """``W^T``: row ``i`` holds the NEIGHBOUR weights into item ``i`` (the explanations' anchors)."""
    popularity64: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    """``popularity`` in float64 (what scores add up in)."""
    weights64: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    """The NEIGHBOUR weights (``neighbours.data``) in float64."""

    def __post_init__(self) -> None:
        if len(self.id_rank) != len(self.ids):
            self.id_rank = np.empty(len(self.ids), np.int64)
            self.id_rank[np.argsort(np.asarray(self.ids, dtype=str), kind="stable")] = np.arange(len(self.ids))
        if self.incoming.shape != self.neighbours.shape[::-1]:
            self.incoming = self.neighbours.T.tocsr()
        self.popularity64 = self.popularity.astype(np.float64)
        self.weights64 = self.neighbours.data.astype(np.float64)

    def rows_of(self, ids: list[str]) -> np.ndarray:
        """Table rows of ``ids`` that the tables know (unknown ids are skipped)."""
        rows = np.fromiter(map(self.row.get, ids, repeat(-1)), dtype=np.int64, count=len(ids))
        return rows[rows >= 0]

    def query_vector(self, history: list[str], rows: np.ndarray | None = None) -> np.ndarray | None:
        """Sum of the history items' in-factors (``None`` without a low-rank part); ``rows``: the
        history's :meth:`rows_of` when the caller has them."""
        if self.in_factors is None:
            return None
        rows = self.rows_of(history) if rows is None else rows
        if not len(rows):
            return np.zeros(self.in_factors.shape[1], np.float32)
        return self.in_factors[rows].sum(axis=0, dtype=np.float64).astype(np.float32)

    def neighbour_sums(self, history: list[str], rows: np.ndarray | None = None) -> np.ndarray:
        """``h W``: the sum of the NEIGHBOUR weights from the history to every item (dense, by row);
        ``rows``: the history's :meth:`rows_of` when the caller has them."""
        rows = self.rows_of(history) if rows is None else rows
        n = len(self.ids)
        if not len(rows) or not self.neighbours.nnz:
            return np.zeros(n, np.float64)
        w = self.neighbours
        at = csr_slices(w.indptr, rows)  # the history rows' entries, summed by column
        return np.bincount(w.indices[at], weights=self.weights64[at], minlength=n)

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


def csr_slices(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in a CSR matrix's ``indices``/``data`` of the entries of ``rows``, row after row."""
    starts = indptr[rows].astype(np.int64)
    lens = indptr[rows + 1].astype(np.int64) - starts
    return np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))


class TableCache:
    """Process-wide LRU of :class:`LiveTables` by (database, dataset, tag, generation); thread-safe.

    Reading a new publication's tables takes seconds (its NEIGHBOUR relationships). So that a publish
    holds up no request, :meth:`ready` reads them in the background and, meanwhile, :meth:`stand_in`
    names the publication this process already holds for the generation, which answers until then.
    """

    def __init__(self, size: int = MAX_TABLES) -> None:
        self._lru: LoadingLRU[tuple[str, str, str, int], LiveTables] = LoadingLRU(size)
        self._models: dict[tuple[str, str, str], ModelInfo] = {}
        self._reading: set[tuple[str, str, str, int]] = set()
        self._reading_lock = threading.Lock()

    def get(self, store: GraphStore, tag: str, gen: int) -> LiveTables:
        """The tables of publication ``tag`` for generation ``gen`` (read from the graph on first use).

        After a reload carried the publication into a new generation, the tables of the generation
        before (when this process holds them) give the new one's relationships (see :func:`load_tables`).
        """
        same = (store.database, store.dataset, tag)

        def load() -> LiveTables:  # on a miss only: a hit (every request) looks for nothing else
            found = self._lru.find(lambda k: k[:3] == same and k[3] != gen)
            return load_tables(store, tag, before=found[1] if found is not None else None)

        return self._lru.get((*same, gen), load, lambda t: (*same, t.gen))

    def ready(self, store: GraphStore, info: ModelInfo, gen: int) -> bool:
        """Whether this process holds ``info``'s tables for ``gen``; when not, they are read in a background
        thread (one per publication and generation)."""
        key = (store.database, store.dataset, info.tag, gen)
        self._models[key[:3]] = info
        if self._lru.peek(key) is not None:
            return True
        with self._reading_lock:
            if key in self._reading:
                return False
            self._reading.add(key)
        threading.Thread(target=self._read, args=(store, info.tag, gen, key), name="graphrec-tables", daemon=True).start()
        return False

    def _read(self, store: GraphStore, tag: str, gen: int, key: tuple[str, str, str, int]) -> None:
        try:
            self.get(store, tag, gen)
        except Exception as e:  # noqa: BLE001 - requests go on with the stand-in, or read the tables themselves
            log.warning("reading the tables of %s (generation %s) failed: %s", tag, gen, e)
        finally:
            with self._reading_lock:
                self._reading.discard(key)

    def stand_in(self, store: GraphStore, tag: str, gen: int) -> ModelInfo | None:
        """The publication (not ``tag``) whose tables for ``gen`` this process used last, or ``None``."""
        found = self._lru.find(lambda k: k[:2] == (store.database, store.dataset) and k[3] == gen and k[2] != tag)
        return self._models.get(found[0][:3]) if found is not None else None

    def clear(self) -> None:
        self._lru.clear()
        self._models.clear()


def load_tables(store: GraphStore, tag: str, before: LiveTables | None = None) -> LiveTables:
    """Read publication ``tag``'s tables for the active generation from the graph.

    Reading the NEIGHBOUR relationships is most of the cost (about 6 s for MovieLens' 1.16 million, the
    time of a request that waits for it). A ``replace`` reload copies the publication's relationships
    between the items both generations hold, unchanged, and nothing else writes them; so with the
    tables ``before`` of the same publication on an earlier generation, the new generation's
    relationships are ``before``'s between the items still there. They are used when the new
    generation holds exactly that many NEIGHBOUR relationships (:data:`Q_NEIGHBOUR_DEGREES`, from the
    degree store); otherwise (another publication's relationships not yet removed, a partial copy)
    the relationships are read.
    """
    rows = store.read(Q_LIVE_ITEMS, {"tag": tag})
    ids = [r["id"] for r in rows]
    gen = int(rows[0]["gen"]) if rows else -1
    row = {i: k for k, i in enumerate(ids)}
    fin = fout = None
    if any(r["fin"] is not None for r in rows):
        dim = len(next(r["fin"] for r in rows if r["fin"] is not None))
        fin = np.zeros((len(rows), dim), np.float32)
        fout = np.zeros((len(rows), dim), np.float32)
        for k, r in enumerate(rows):
            if r["fin"] is not None:
                fin[k] = r["fin"]
                fout[k] = r["fout"][:-1]  # drop the MIPS augmentation
    pop = np.array([r["pop"] or 0.0 for r in rows], dtype=np.float32)
    neighbours = _carried(store, before, tag, gen, ids) if before is not None else None
    if neighbours is None:
        neighbours = _read_neighbours(store, tag, row)
    order = np.argsort(-pop, kind="stable")
    return LiveTables(tag=tag, gen=gen, ids=ids, row=row, in_factors=fin, out_factors=fout, popularity=pop, neighbours=neighbours,
                      pop_desc=pop[order], pop_order=[ids[k] for k in order])


def _carried(store: GraphStore, before: LiveTables, tag: str, gen: int, ids: list[str]) -> sp.csr_matrix | None:
    """``before``'s NEIGHBOUR weights between the items of ``ids`` (rows and columns in ``ids``' order),
    when the active generation holds exactly that many NEIGHBOUR relationships; else ``None``."""
    if before.tag != tag or before.gen == gen:
        return None
    counted = store.read(Q_NEIGHBOUR_DEGREES, {})
    if not counted or int(counted[0]["gen"]) != gen:
        return None
    old = np.fromiter(map(before.row.get, ids, repeat(-1)), dtype=np.int64, count=len(ids))
    to_new = np.full(len(before.ids), -1, np.int64)
    kept = np.flatnonzero(old >= 0)
    to_new[old[kept]] = kept
    coo = before.neighbours.tocoo()
    a, b = to_new[coo.row], to_new[coo.col]
    keep = (a >= 0) & (b >= 0)
    if int(counted[0]["n"] or 0) != int(keep.sum()):
        return None
    return sp.csr_matrix((coo.data[keep], (a[keep], b[keep])), shape=(len(ids), len(ids)))


def _read_neighbours(store: GraphStore, tag: str, row: dict[str, int]) -> sp.csr_matrix:
    """The publication's NEIGHBOUR weights between the items of ``row``, read from the graph."""
    src: list[int] = []
    dst: list[int] = []
    w: list[float] = []
    for r in store.read(Q_LIVE_NEIGHBOURS, {"tag": tag}):
        a = row.get(r["a"])
        if a is None:
            continue
        for b, x in zip(r["b"], r["w"]):
            if b in row:
                src.append(a)
                dst.append(row[b])
                w.append(float(x))
    n = len(row)
    return sp.csr_matrix((np.array(w, np.float32), (np.array(src, np.int64), np.array(dst, np.int64))), shape=(n, n))


TABLES = TableCache()
"""The process's cache (serving code uses this one)."""
