"""The live serving path without Neo4j: table sums and explanation anchors against dense references, the
process caches, one graph round trip per warm request, and the answer's JSON equal to the validated models'."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
import scipy.sparse as sp

from api.routes.users import _json, response_json, response_of
from graph.recommend import Filters
from graph.serving import planner
from graph.serving.catalogue import CATALOGUES, Q_CATALOGUE, Q_DETAILS, CatalogueCache
from graph.serving.explain_live import strongest_anchors
from graph.serving.live import Q_PLAN
from graph.serving.store import GraphStore
from graph.serving.tables import Q_LIVE_ITEMS, Q_LIVE_NEIGHBOURS, TABLES, LiveTables

N = 40
IDS = [f"i{j}" for j in range(N)]


def _weights(seed: int = 1) -> sp.csr_matrix:
    w = sp.random(N, N, density=0.25, random_state=seed, dtype=np.float32, format="csr")
    w.data = np.round(w.data * 4) / 4 + 0.25  # ties between weights, all positive
    return w


def _tables(w: sp.csr_matrix) -> LiveTables:
    return LiveTables(tag="t", gen=1, ids=IDS, row={i: k for k, i in enumerate(IDS)}, in_factors=None, out_factors=None,
                      popularity=np.linspace(0, 1, N, dtype=np.float32), neighbours=w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbour_sums_and_anchors_equal_dense_references(seed: int) -> None:
    w = _weights(seed)
    t, dense = _tables(w), w.toarray()
    rng = np.random.default_rng(seed)
    for _ in range(50):
        history = [IDS[j] for j in rng.integers(0, N, rng.integers(0, 15))] + ["unknown"]
        rows = [t.row[i] for i in history if i in t.row]  # repeats count twice, as in h W
        np.testing.assert_allclose(t.neighbour_sums(history), dense[rows].sum(axis=0) if rows else np.zeros(N))
        items = [IDS[j] for j in rng.integers(0, N, 8)] + ["unknown"]
        got = strongest_anchors(t, history, items, 3)
        seen = sorted(set(rows))
        for i in items:
            if i == "unknown" or not seen:
                assert i not in got
                continue
            c = t.row[i]
            assert got[i] == sorted(((IDS[j], float(dense[j, c])) for j in seen if dense[j, c] > 0), key=lambda a: (-a[1], a[0]))[:3]


class FakeGraph:
    """Answers the serving queries from Python data (a fake of :class:`GraphStore`) and counts the round trips."""

    def __init__(self, w: sp.csr_matrix, histories: dict[str, list[str]], loaded_at: str = "2026-01-01T00:00:00Z") -> None:
        self.w, self.histories, self.loaded_at = w, histories, loaded_at
        self.calls: list[str] = []
        self.store = MagicMock(spec=GraphStore)
        self.store.dataset, self.store.database = "toy", "neo4j"
        self.store.read.side_effect = self.read

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        params = params or {}
        model = {"dataset": "toy", "version": "v1", "tag": "t", "dim": 0, "max_norm": 0.0, "kind": "live", "item_prop": "x",
                 "alpha": 0.0, "gamma": 0.5, "pop_prop": "p"}
        if query == Q_PLAN:
            self.calls.append("plan")
            u = params["user_id"]
            return [{"m": model, "gen": 1, "loaded_at": self.loaded_at, "user_ok": u is None or u in self.histories,
                     "history": list(self.histories.get(u, []))}]
        if query == Q_LIVE_ITEMS:
            self.calls.append("items")
            return [{"gen": 1, "id": i, "fin": None, "fout": None, "pop": float(k) / N} for k, i in enumerate(IDS)]
        if query == Q_LIVE_NEIGHBOURS:
            self.calls.append("neighbours")
            return [{"a": IDS[a], "b": [IDS[b] for b in self.w[a].indices], "w": self.w[a].data.tolist()} for a in range(N) if self.w[a].nnz]
        if query == Q_CATALOGUE:
            self.calls.append("catalogue")
            return [{"gen": 1, "loaded_at": self.loaded_at, "id": i, "title": f"Title {i}", "year": 2000, "genres": ["B", "A"]} for i in IDS]
        if query == Q_DETAILS:
            self.calls.append("details")
            return [{"id": i, "title": f"Title {i}", "year": 2000, "genres": ["A"]} for i in params["ids"] if i in IDS]
        raise AssertionError(f"unexpected query {query[:60]!r}")


@pytest.fixture()
def fresh_caches() -> None:
    TABLES.clear()
    CATALOGUES.clear()


def test_a_warm_request_is_one_round_trip_and_reads_the_history_every_time(fresh_caches: None) -> None:
    g = FakeGraph(_weights(), {"u1": ["i1", "i2", "i3"]})
    assert planner.warm(g.store) == "t"
    assert sorted(g.calls) == ["catalogue", "items", "neighbours", "plan"]
    g.calls.clear()
    served = planner.recommend(g.store, "u1", 5)
    exps = planner.explain(g.store, served, as_dicts=True)
    assert g.calls == ["plan"]  # tables and details come from the process; the history from the graph
    assert served.recs.items and all(i.title == f"Title {i.item_id}" and i.genres == ["A", "B"] for i in served.recs.items)
    assert all(e["reasons"] for e in exps.values())
    g.histories["u1"] = ["i1", "i2", "i3", "i4", "i5", "i6"]  # feedback: the next answer follows it
    g.calls.clear()
    after = planner.recommend(g.store, "u1", 5)
    assert g.calls == ["plan"] and after.recs.history_size == 6
    assert {"i4", "i5", "i6"}.isdisjoint(i.item_id for i in after.recs.items)


def test_a_new_load_is_picked_up_at_once(fresh_caches: None) -> None:
    g = FakeGraph(_weights(), {"u1": ["i1", "i2"]})
    planner.recommend(g.store, "u1", 3)
    g.loaded_at = "2026-01-02T00:00:00Z"  # an upsert load flipped the dataset: its items are read again
    g.calls.clear()
    planner.recommend(g.store, "u1", 3)
    assert g.calls == ["plan", "catalogue"]


def test_catalogue_reads_items_it_lacks() -> None:
    cache = CatalogueCache()
    g = FakeGraph(_weights(), {})
    cat = cache.get(g.store, 1, g.loaded_at)
    assert cache.get(g.store, 1, g.loaded_at) is cat
    g.calls.clear()
    assert set(cat.details(g.store, ["i1", "nope"])) == {"i1"} and g.calls == ["details"]


def test_the_live_answer_json_equals_the_validated_models_json(fresh_caches: None) -> None:
    g = FakeGraph(_weights(), {"u1": ["i1", "i2", "i3", "i7"]})
    served = planner.recommend(g.store, "u1", 6, Filters(exclude_ids=["i0"]))
    dicts = planner.explain(g.store, served, 3, as_dicts=True)
    models = planner.explain(g.store, served, 3)
    fast, slow = response_json(served.recs, dicts).body, _json(response_of(served.recs, models)).body
    assert fast == slow
    body = json.loads(fast)
    assert [i["rank"] for i in body["items"]] == list(range(1, 7))
    reason = body["items"][0]["explanation"]["reasons"][0]
    assert reason["kind"] == "neighbour" and [n["label"] for n in reason["nodes"]] == ["User", "Item", "Item"]
    assert reason["rels"][-1]["properties"]["tag"] == "t" and reason["rels"][-1]["properties"]["w"] > 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_top_of_equals_the_eligible_rows_top_k(seed: int) -> None:
    from graph.serving.live import _top_of, _top_rows

    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=N), 1)  # ties
    id_rank = rng.permutation(N)
    for k in (1, 5, 10, N, N + 3):
        for out in (rng.choice(N, size=rng.integers(0, N), replace=False) for _ in range(10)):
            neg = -scores
            neg[out] = np.inf
            rows = np.setdiff1d(np.arange(N), out)
            assert _top_of(neg, id_rank, k) == _top_rows(scores, rows, id_rank, k)


def test_neighbour_cosines_equal_a_dense_reference() -> None:
    import scipy.sparse as sp

    from graph.serving.live import neighbour_cosines

    rng = np.random.default_rng(3)
    dense = np.where(rng.random((12, 12)) < 0.3, rng.random((12, 12)), 0.0)
    np.fill_diagonal(dense, 0.0)
    rows = [5, 1, 9, 0]
    v = dense[rows] + np.eye(12)[rows]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(neighbour_cosines(sp.csr_matrix(dense, dtype=np.float32), rows), v @ v.T, rtol=1e-6, atol=1e-7)
