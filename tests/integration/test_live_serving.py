"""Live models against the real Neo4j: the graph's scores equal the offline live form, feedback moves
the ranking on the very next request, and every explanation path re-checks with Cypher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from graph.connection import read, write
from graph.export import export_snapshot
from graph.feedback import Interaction, record_interaction
from graph.recommend import Filters
from graph.recommend_fixtures import Q_CLEAR, Q_DATASET, Q_INTERACTIONS, Q_ITEMS, Q_USERS
from graph.serving.explain_live import verify_neighbour
from graph.serving.planner import explain, recommend, recommend_cold_start, similar_items, warm
from graph.serving.publish_live import publish_live
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES
from gnn.data import InteractionData
from gnn.fusion.live import FusionWeights, combine, history_matrix, popularity
from gnn.filters.config import load_filter_config
from gnn.live_pipeline import LiveFitConfig, filter_fitter, fit_live
from gnn.live_checkpoint import load_live_checkpoint
from graphrec.errors import UnknownItemError, UnknownUserError
from graphrec.snapshot import SplitSpec

DS = "live-toy"
GENRES = ("Action", "Comedy", "Drama")
N_ITEMS, N_USERS = 90, 60


def _genre(j: int) -> str:
    return GENRES[j % 3]


@pytest.fixture(scope="module")
def live(neo4j_driver: Any, neo4j_info: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A graph whose users each like one genre, a live model fitted on it and published."""
    db = neo4j_info.database
    rng = np.random.default_rng(7)
    write(neo4j_driver, Q_CLEAR, {"dataset": DS}, db)
    write(neo4j_driver, Q_DATASET, {"dataset": DS, "gen": 1}, db)
    items = [{"id": f"i{j}", "title": f"Film {j}", "year": 2000 + j % 20, "genres": [_genre(j)], "text": f"a {_genre(j).lower()} film"}
             for j in range(N_ITEMS)]
    write(neo4j_driver, Q_ITEMS, {"dataset": DS, "gen": 1, "rows": items}, db)
    users = [f"u{u}" for u in range(N_USERS)]
    write(neo4j_driver, Q_USERS, {"dataset": DS, "gen": 1, "ids": users}, db)
    rows = []
    for u in range(N_USERS):
        g = u % 3
        own = [j for j in range(N_ITEMS) if j % 3 == g]
        other = [j for j in range(N_ITEMS) if j % 3 != g]
        picks = list(rng.choice(own, size=10, replace=False)) + list(rng.choice(other, size=2, replace=False))
        for k, j in enumerate(picks):
            rows.append({"u": f"u{u}", "i": f"i{int(j)}", "r": 5.0, "ts": 1_000_000 + u * 100 + k})
    write(neo4j_driver, Q_INTERACTIONS, {"dataset": DS, "gen": 1, "rows": rows}, db)
    snap = export_snapshot(neo4j_driver, DS, SplitSpec(name="per_user_temporal", params={"test_fraction": 0.2, "val_fraction": 0.1}), db)
    out = tmp_path_factory.mktemp("live") / "ckpt"
    cfg = LiveFitConfig(filter={"model": "gfcf", "rank": 8}, use_text=False, neighbours_top_k=20)
    fit_live(snap, out, cfg)
    ck = load_live_checkpoint(out)
    store = GraphStore(neo4j_driver, DS, db)
    TABLES.clear()
    report = publish_live(store, ck.form, ck.item_ids, version=ck.meta.version, checkpoint=str(out), grace_s=0)
    yield {"store": store, "ck": ck, "report": report, "data": InteractionData.from_snapshot(snap), "db": db}


def _history(store: GraphStore, user: str) -> list[str]:
    rows = store.read("MATCH (d:Dataset {name: $dataset}) MATCH (:User {dataset: $dataset, gen: d.gen, id: $u})-[:INTERACTED]->(i:Item) "
                      "RETURN collect(i.id) AS h", {"u": user})
    return list(rows[0]["h"])


def _offline(live: dict[str, Any], history: list[str]) -> dict[str, float]:
    ck = live["ck"]
    row = {i: n for n, i in enumerate(ck.item_ids)}
    h = sp.csr_matrix((np.ones(len(history), np.float32), ([0] * len(history), [row[i] for i in history])), shape=(1, len(ck.item_ids)))
    return dict(zip(ck.item_ids, ck.form.scores(h)[0].tolist()))


def test_publish_writes_neighbours_factors_and_pointer(live: dict[str, Any]) -> None:
    r = live["report"]
    assert r.model.kind == "live" and r.items_with_factors == N_ITEMS and r.items_missing == 0
    assert r.neighbour_relationships == live["ck"].form.neighbours.nnz > 0
    n = read(live["store"].driver, "MATCH (:Item)-[r:NEIGHBOUR]->(:Item) WHERE r.tag = $t RETURN count(r) AS c", {"t": r.model.tag}, live["db"])
    assert n[0]["c"] == r.neighbour_relationships


def test_served_model_was_fitted_on_every_interaction(live: dict[str, Any]) -> None:
    meta = live["ck"].meta
    assert meta.extra["served_on"] == ["train", "val", "test"]
    data: InteractionData = live["data"]
    fc = load_filter_config(meta.extra["filter"])
    weights = FusionWeights(**meta.extra["fusion"])
    h_all = history_matrix([data.train, data.val, data.test], data.num_users, data.num_items)
    refit = combine(filter_fitter(fc)(data, ("train", "val", "test")), None, popularity(h_all), weights)
    served = live["ck"].form
    np.testing.assert_allclose(served.neighbours.toarray(), refit.neighbours.toarray(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(served.in_factors @ served.out_factors.T, refit.in_factors @ refit.out_factors.T, rtol=1e-4, atol=1e-6)
    # a fit that left out the validation and test parts is a different model
    partial = filter_fitter(fc)(data, ("train",))
    assert not np.allclose(served.neighbours.toarray(), partial.neighbours.toarray(), atol=1e-6)
    # the evaluation numbers (fits without the test part) are kept apart from the served form
    assert set(meta.val_metrics) == set(meta.test_metrics) == {"recall@20", "ndcg@20"}


@pytest.mark.parametrize("user", ["u0", "u4", "u11"])
def test_live_scores_equal_the_offline_form(live: dict[str, Any], user: str) -> None:
    store = live["store"]
    served = recommend(store, user, 10, Filters(exclude_seen=False))
    assert served.live and served.recs.exact
    offline = _offline(live, _history(store, user))
    best = sorted(offline.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    got = [(i.item_id, i.score) for i in served.recs.items]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in best], rtol=1e-4, atol=1e-6)
    for item in served.recs.items:
        assert item.score == pytest.approx(offline[item.item_id], rel=1e-4, abs=1e-6)


Q_NEIGHBOUR_SUMS = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (:User {dataset: $dataset, gen: d.gen, id: $u})-[:INTERACTED]->(:Item)-[n:NEIGHBOUR]->(i:Item)
WHERE n.tag = m.tag
RETURN i.id AS id, sum(n.w) AS lin
"""


def test_the_neighbour_part_is_the_sum_over_graph_paths(live: dict[str, Any]) -> None:
    store = live["store"]
    served = recommend(store, "u8", 10, Filters(exclude_seen=False))
    sums = {r["id"]: r["lin"] for r in store.read(Q_NEIGHBOUR_SUMS, {"u": "u8"})}
    for item in served.recs.items:
        assert item.score_parts.neighbours == pytest.approx(sums.get(item.item_id, 0.0), rel=1e-5, abs=1e-7)


def test_filters_and_seen_items(live: dict[str, Any]) -> None:
    store = live["store"]
    seen = set(_history(store, "u2"))
    served = recommend(store, "u2", 8, Filters(genres=["Comedy"]))
    assert served.recs.items and all(i.genres == ["Comedy"] and i.item_id not in seen for i in served.recs.items)
    offline = _offline(live, sorted(seen))
    eligible = sorted(((i, s) for i, s in offline.items() if i not in seen and _genre(int(i[1:])) == "Comedy"), key=lambda kv: (-kv[1], kv[0]))
    assert [i.item_id for i in served.recs.items] == [i for i, _ in eligible[:8]]


def test_diversity_reranks_the_best_items(live: dict[str, Any]) -> None:
    store = live["store"]
    plain = recommend(store, "u9", 6).recs.items
    diverse = recommend(store, "u9", 6, Filters(diversity=0.8)).recs.items
    pool = {i.item_id for i in recommend(store, "u9", 24).recs.items}
    assert len(diverse) == 6 and {i.item_id for i in diverse} <= pool  # chosen from the best 4k
    assert diverse[0].item_id == plain[0].item_id  # the most relevant item comes first
    assert [i.item_id for i in diverse] != [i.item_id for i in plain]


def test_feedback_moves_the_ranking_on_the_next_request(live: dict[str, Any]) -> None:
    store = live["store"]
    user = "u3"  # likes Action (u % 3 == 0)
    before = recommend(store, user, 10).recs.items
    share_before = sum(i.genres == ["Drama"] for i in before) / len(before)
    seen = set(_history(store, user))
    dramas = [f"i{j}" for j in range(N_ITEMS) if _genre(j) == "Drama" and f"i{j}" not in seen][:8]
    for item in dramas:
        record_interaction(store.driver, Interaction(user_id=user, item_id=item, rating=5.0), dataset=DS, database=store.database)
    after = recommend(store, user, 10).recs.items
    share_after = sum(i.genres == ["Drama"] for i in after) / len(after)
    assert share_after > share_before
    assert not set(dramas) & {i.item_id for i in after}  # what was just rated is seen now
    offline = _offline(live, _history(store, user))
    assert after[0].score == pytest.approx(max(s for i, s in offline.items() if i not in set(_history(store, user))), rel=1e-4)


def test_a_user_created_by_feedback_is_served_at_once(live: dict[str, Any]) -> None:
    store = live["store"]
    with pytest.raises(UnknownUserError):
        recommend(store, "newcomer", 5)
    for item in ("i1", "i4", "i7"):  # Comedy
        record_interaction(store.driver, Interaction(user_id="newcomer", item_id=item, rating=5.0, create_user=True), dataset=DS,
                           database=store.database)
    items = recommend(store, "newcomer", 5).recs.items
    assert len(items) == 5 and sum(i.genres == ["Comedy"] for i in items) >= 3


def test_every_explanation_path_rechecks_with_cypher(live: dict[str, Any]) -> None:
    store = live["store"]
    served = recommend(store, "u5", 6)
    exps = explain(store, served)
    checked = 0
    for item in served.recs.items:
        for reason in exps[item.item_id].reasons:
            if reason.kind != "neighbour":
                continue
            w = verify_neighbour(store, "u5", reason.anchor_item_id, item.item_id, served.recs.model_tag)
            assert w is not None and w == pytest.approx(reason.rels[-1].properties["w"])
            checked += 1
    assert checked > 0


def test_similar_items_and_cold_start(live: dict[str, Any]) -> None:
    store = live["store"]
    sim = similar_items(store, "i0", 5)
    assert sim.recs.items and "i0" not in {i.item_id for i in sim.recs.items}
    assert sum(i.genres == [_genre(0)] for i in sim.recs.items) >= 3
    cold = recommend_cold_start(store, ["i2", "i5"], None, 5)
    assert cold.recs.items and not {"i2", "i5"} & {i.item_id for i in cold.recs.items}
    with pytest.raises(UnknownItemError):
        recommend_cold_start(store, ["nope"], None, 5)


def test_fusion_weights_combine_linearly() -> None:
    w = sp.csr_matrix(np.array([[0, 1.0], [2.0, 0]], np.float32))
    t = sp.csr_matrix(np.array([[0, 0.5], [0.5, 0]], np.float32))
    from gnn.live import LiveForm

    form = combine(LiveForm(w), t, np.array([1.0, 0.0], np.float32), FusionWeights(beta=2.0, gamma=1.0, text_scale=0.5, pop_scale=3.0))
    np.testing.assert_allclose(form.scores(np.array([[1.0, 1.0]], np.float32)), [[2.0 + 0.5 + 6.0, 1.0 + 0.5]])


def test_one_item_explained_and_drawn(live: dict[str, Any]) -> None:
    from graph.explain_plot import explanation_png
    from graph.serving.planner import explain_item_live

    store = live["store"]
    top = recommend(store, "u6", 1).recs.items[0]
    exp = explain_item_live(store, "u6", top.item_id)
    assert exp is not None and exp.reasons and exp.reasons[0].kind == "neighbour"
    assert explanation_png(exp, "u6")[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UnknownItemError):
        explain_item_live(store, "u6", "no-such-item")


def test_live_model_without_factors_is_healthy_and_diversifies(live: dict[str, Any]) -> None:
    """EASE-style live models store neighbours and popularity but no factors: health still sees every item and diversity still re-ranks."""
    from gnn.live import LiveForm
    from graph.health import serving_health

    store, ck = live["store"], live["ck"]
    form = ck.form
    bare = LiveForm(neighbours=form.neighbours, popularity=form.popularity, gamma=form.gamma)
    try:
        report = publish_live(store, bare, ck.item_ids, version="bare-ease-like", checkpoint="-", grace_s=0)
        assert report.items_with_factors == 0
        # this process holds the earlier publication's tables, which would answer while the new ones are
        # read in the background: wait for them (what the API does at start-up)
        assert warm(store) == report.model.tag
        assert recommend(store, "u9", 3).recs.model_version == "bare-ease-like"
        h = serving_health(store.driver, DS, live["db"])
        assert h.status == "ok" and h.coverage == 1.0 and h.items_with_vector == N_ITEMS, h
        # diversity without factors: MMR on the cosines of the items' neighbour rows
        plain = recommend(store, "u9", 6).recs.items
        diverse = recommend(store, "u9", 6, Filters(diversity=0.8)).recs.items
        pool = {i.item_id for i in recommend(store, "u9", 24).recs.items}
        assert len(diverse) == 6 and {i.item_id for i in diverse} <= pool and diverse[0].item_id == plain[0].item_id
        assert [i.item_id for i in diverse] != [i.item_id for i in plain]
    finally:
        TABLES.clear()
        publish_live(store, ck.form, ck.item_ids, version=ck.meta.version + "-again", checkpoint="-", grace_s=0)
