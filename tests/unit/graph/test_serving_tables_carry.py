"""After a reload, the tables of the new generation come from the earlier generation's tables when the
graph holds exactly the carried relationships (no 1-million-relationship read while requests wait)."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
import scipy.sparse as sp

from graph.serving.store import GraphStore
from graph.serving.tables import Q_LIVE_ITEMS, Q_LIVE_NEIGHBOURS, Q_NEIGHBOUR_DEGREES, TableCache


class Generations:
    """A fake graph whose active generation can be switched: items, NEIGHBOUR weights by id pair."""

    def __init__(self, ids: list[str], weights: dict[tuple[str, str], float], gen: int = 1) -> None:
        self.ids, self.weights, self.gen = ids, weights, gen
        self.extra_relationships = 0  # relationships the degree store counts but the tables do not hold
        self.calls: list[str] = []
        self.store = MagicMock(spec=GraphStore)
        self.store.dataset, self.store.database = "toy", "neo4j"
        self.store.read.side_effect = self.read

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if query == Q_LIVE_ITEMS:
            self.calls.append("items")
            return [{"gen": self.gen, "id": i, "fin": None, "fout": None, "pop": 1.0 / (k + 1)} for k, i in enumerate(self.ids)]
        if query == Q_NEIGHBOUR_DEGREES:
            self.calls.append("degrees")
            return [{"gen": self.gen, "n": len(self.weights) + self.extra_relationships}]
        if query == Q_LIVE_NEIGHBOURS:
            self.calls.append("neighbours")
            by_a: dict[str, list[tuple[str, float]]] = {}
            for (a, b), w in self.weights.items():
                by_a.setdefault(a, []).append((b, w))
            return [{"a": a, "b": [b for b, _ in v], "w": [w for _, w in v]} for a, v in by_a.items()]
        raise AssertionError(f"unexpected query {query[:60]!r}")


def _dense(ids: list[str], weights: dict[tuple[str, str], float]) -> np.ndarray:
    row = {i: k for k, i in enumerate(ids)}
    out = np.zeros((len(ids), len(ids)), np.float32)
    for (a, b), w in weights.items():
        out[row[a], row[b]] = w
    return out


def _graph(seed: int) -> tuple[list[str], dict[tuple[str, str], float]]:
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(30)]
    pairs = {(ids[a], ids[b]): float(np.float32(rng.random())) for a, b in rng.integers(0, 30, (200, 2)) if a != b}
    return ids, pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_a_carried_generation_is_derived_and_equals_a_full_read(seed: int) -> None:
    ids, weights = _graph(seed)
    g, cache = Generations(ids, weights), TableCache()
    cache.get(g.store, "t", 1)
    assert g.calls == ["items", "neighbours"]
    # the reload: i25..i29 removed, n0..n2 new (in another order); relationships copied between kept items
    removed = {f"i{k}" for k in range(25, 30)}
    g.ids = ["n0", *[i for i in ids if i not in removed][::-1], "n1", "n2"]
    g.weights = {(a, b): w for (a, b), w in weights.items() if a not in removed and b not in removed}
    g.gen, g.calls = 2, []
    t2 = cache.get(g.store, "t", 2)
    assert g.calls == ["items", "degrees"]  # no relationship read
    assert t2.gen == 2 and t2.ids == g.ids
    np.testing.assert_array_equal(t2.neighbours.toarray(), _dense(g.ids, g.weights))
    fresh = TableCache().get(g.store, "t", 2)  # what a process without the earlier tables reads
    np.testing.assert_array_equal(t2.neighbours.toarray(), fresh.neighbours.toarray())
    np.testing.assert_array_equal(t2.incoming.toarray(), fresh.incoming.toarray())


def test_a_count_that_differs_means_a_full_read() -> None:
    ids, weights = _graph(2)
    g, cache = Generations(ids, weights), TableCache()
    cache.get(g.store, "t", 1)
    g.gen, g.extra_relationships, g.calls = 2, 7, []  # e.g. an earlier publication's relationships not yet removed
    t2 = cache.get(g.store, "t", 2)
    assert g.calls == ["items", "degrees", "neighbours"]
    np.testing.assert_array_equal(t2.neighbours.toarray(), _dense(ids, weights))


def test_another_publication_is_always_read() -> None:
    ids, weights = _graph(3)
    g, cache = Generations(ids, weights), TableCache()
    cache.get(g.store, "t", 1)
    g.gen, g.calls = 2, []
    cache.get(g.store, "u", 2)
    assert g.calls == ["items", "neighbours"]
    assert isinstance(cache.get(g.store, "u", 2).neighbours, sp.csr_matrix)


def test_after_a_publish_the_held_publication_answers_until_the_new_tables_are_read() -> None:
    import threading

    from graph.serving import planner
    from graph.serving.catalogue import CATALOGUES
    from graph.serving.live import Q_PLAN
    from graph.serving.tables import TABLES
    from tests.unit.graph.test_serving_live_unit import FakeGraph, _weights

    class Publishing(FakeGraph):
        tag = "t"
        gate = threading.Event()

        def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
            rows = super().read(query, params)
            if query == Q_PLAN:
                rows[0]["m"] = {**rows[0]["m"], "tag": self.tag, "version": f"v-{self.tag}"}
            if query == Q_LIVE_NEIGHBOURS and self.tag == "t2":
                assert self.gate.wait(30)  # the new publication's relationships take a while to read
            return rows

    TABLES.clear()
    CATALOGUES.clear()
    g = Publishing(_weights(), {"u1": ["i1", "i2"]})
    assert planner.warm(g.store) == "t"
    g.tag = "t2"  # a publish switched the pointer
    served = planner.recommend(g.store, "u1", 3)  # does not wait for t2's tables
    assert served.recs.model_tag == "t" and served.recs.model_version == "v-t"
    assert planner.explain(g.store, served, as_dicts=True)  # explained with the tables that answered
    g.gate.set()
    for _ in range(100):  # the background read finishes
        if planner.recommend(g.store, "u1", 3).recs.model_tag == "t2":
            break
        threading.Event().wait(0.05)
    assert planner.recommend(g.store, "u1", 3).recs.model_tag == "t2"
    TABLES.clear()
    CATALOGUES.clear()
