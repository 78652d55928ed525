"""The query layer against the real Neo4j: exact dot-product ranking through the cosine index,
filters, feedback, explanations whose paths exist, similar items, cold start, cold items on publish."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from gnn.embeddings import fold_in
from graph.connection import read
from graph.embeddings import publish
from graph.explain import explain, verify_reason
from graph.recommend import Filters, Interaction, recommend, recommend_cold_start, record_interaction, similar_items
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graphrec.errors import InvalidArgumentError, UnknownItemError, UnknownUserError

DS = "toy-layer"


@pytest.fixture(scope="module")
def toy(neo4j_driver: Any, neo4j_info: Any) -> Iterator[dict[str, Any]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=30, n_items=80, per_user=12, seed=3, database=db)
    item_ids = [i["id"] for i in g["items"]]
    warm = item_ids[:-4]  # the last 4 items are "new": no model vector, embedded from text on publish
    emb = random_embeddings(g["users"], warm, dim=8, seed=11, version="layer-v1")
    cold_rng = np.random.default_rng(5)
    cold_vecs = cold_rng.normal(size=(4, 8))
    text_rng = np.random.default_rng(6)
    report = publish(neo4j_driver, emb, DS, database=db,
                     cold_item_vectors=lambda texts: cold_vecs[: len(texts)],
                     text_vectors=lambda ids, texts: text_rng.normal(size=(len(texts), 5)), grace_s=0)
    vectors = dict(zip(warm, emb.item_vectors))
    vectors.update(zip(item_ids[-4:], cold_vecs))
    seen: dict[str, set[str]] = {}
    for row in g["interactions"]:
        seen.setdefault(row["u"], set()).add(row["i"])
    yield {"driver": neo4j_driver, "db": db, "graph": g, "emb": emb, "vectors": vectors, "report": report, "seen": seen,
           "users": dict(zip(emb.user_ids, emb.user_vectors)), "items": {i["id"]: i for i in g["items"]}}


def expected(toy: dict[str, Any], uvec: np.ndarray, k: int, skip: set[str], keep: Any = lambda i: True) -> list[str]:
    scores = {i: float(v @ uvec) for i, v in toy["vectors"].items() if i not in skip and keep(toy["items"][i])}
    return [i for i, _ in sorted(scores.items(), key=lambda kv: -kv[1])[:k]]


def test_publish_embeds_cold_items_and_indexes(toy: dict[str, Any]) -> None:
    r = toy["report"]
    assert r.cold_items == 4 and r.items_without_vector == 0 and r.items_written == 80 and r.users_written == 30
    rows = read(toy["driver"], "SHOW INDEXES YIELD name, type, state, options WHERE name = $n RETURN *", {"n": r.model.item_index}, toy["db"])
    assert rows and rows[0]["state"] == "ONLINE" and rows[0]["options"]["indexConfig"]["vector.dimensions"] == 9


@pytest.mark.parametrize("user", ["u0", "u7", "u19"])
def test_ranking_equals_dot_product_ranking(toy: dict[str, Any], user: str) -> None:
    recs = recommend(toy["driver"], user, 10, Filters(exclude_seen=False), dataset=DS, database=toy["db"])
    uvec = toy["users"][user]
    assert [i.item_id for i in recs.items] == expected(toy, uvec, 10, set())
    for it in recs.items:
        assert it.score == pytest.approx(float(toy["vectors"][it.item_id] @ uvec), rel=1e-4, abs=1e-4)
    assert recs.model_version == "layer-v1"


def folded(toy: dict[str, Any], user: str, fresh: list[str], like: float = 4.0) -> np.ndarray:
    """The user's vector with ``fresh`` (liked since the publication) folded in by the offline rule
    (:func:`gnn.embeddings.fold_in`); n = the items the user liked before the publication."""
    n = sum(1 for r in toy["graph"]["interactions"] if r["u"] == user and r["r"] >= like)
    return fold_in(toy["users"][user], np.array([toy["vectors"][i] for i in fresh]), n)


def test_exclude_seen_and_fresh_feedback(toy: dict[str, Any]) -> None:
    d, db = toy["driver"], toy["db"]
    recs = recommend(d, "u3", 5, dataset=DS, database=db)
    assert not {i.item_id for i in recs.items} & toy["seen"]["u3"]
    top = recs.items[0].item_id
    record_interaction(d, Interaction(user_id="u3", item_id=top, rating=4.0), dataset=DS, database=db)
    again = recommend(d, "u3", 5, dataset=DS, database=db)
    assert top not in {i.item_id for i in again.items}
    uvec = folded(toy, "u3", [top])  # liked (4.0 is the like threshold): folded in at once
    assert [i.item_id for i in again.items] == expected(toy, uvec, 5, toy["seen"]["u3"] | {top})
    for it in again.items:
        assert it.score == pytest.approx(float(toy["vectors"][it.item_id] @ uvec), rel=1e-4, abs=1e-4)


def test_liked_feedback_moves_the_ranking_on_the_next_request(toy: dict[str, Any]) -> None:
    d, db, user = toy["driver"], toy["db"], "u13"
    stored = toy["users"][user]
    before = recommend(d, user, 10, Filters(exclude_seen=False), dataset=DS, database=db)
    assert [i.item_id for i in before.items] == expected(toy, stored, 10, set())
    assert recommend(d, user, 10, dataset=DS, database=db).candidates == "list"  # the serving list answers
    meh = expected(toy, stored, 40, toy["seen"][user])[-1]
    record_interaction(d, Interaction(user_id=user, item_id=meh, rating=2.0), dataset=DS, database=db)
    disliked = recommend(d, user, 10, Filters(exclude_seen=False), dataset=DS, database=db)  # below the like threshold: not folded
    assert [i.item_id for i in disliked.items] == [i.item_id for i in before.items]
    # liking the items furthest from the user's taste turns the ranking towards them
    far = expected(toy, -stored, 4, toy["seen"][user] | {meh})
    for item in far:
        record_interaction(d, Interaction(user_id=user, item_id=item, rating=5.0), dataset=DS, database=db)
    after = recommend(d, user, 10, Filters(exclude_seen=False), dataset=DS, database=db)
    uvec = folded(toy, user, far)
    assert [i.item_id for i in after.items] == expected(toy, uvec, 10, set()) != [i.item_id for i in before.items]
    unseen = recommend(d, user, 10, dataset=DS, database=db)
    assert unseen.candidates == "index"  # the serving list predates the feedback
    assert [i.item_id for i in unseen.items] == expected(toy, uvec, 10, toy["seen"][user] | set(far) | {meh})


def test_filters_are_honoured(toy: dict[str, Any]) -> None:
    d, db, uvec, seen = toy["driver"], toy["db"], toy["users"]["u5"], toy["seen"]["u5"]
    f = Filters(genres=["Crime", "Drama"], year_min=1980, year_max=2005)
    recs = recommend(d, "u5", 5, f, dataset=DS, database=db)
    keep = lambda it: bool({"Crime", "Drama"} & set(it["genres"])) and 1980 <= it["year"] <= 2005  # noqa: E731
    assert [i.item_id for i in recs.items] == expected(toy, uvec, 5, seen, keep)
    for it in recs.items:
        assert {"Crime", "Drama"} & set(it.genres) and 1980 <= (it.year or 0) <= 2005
    # include list far down the ranking: the oversampling grows until they are found
    ranking = expected(toy, uvec, 80, seen)
    tail = ranking[-3:]
    inc = recommend(d, "u5", 3, Filters(include_ids=tail), dataset=DS, database=db)
    assert sorted(i.item_id for i in inc.items) == sorted(tail)
    exc = recommend(d, "u5", 3, Filters(exclude_ids=ranking[:2]), dataset=DS, database=db)
    assert [i.item_id for i in exc.items] == ranking[2:5]


def test_mmr_keeps_candidates_from_the_filtered_pool(toy: dict[str, Any]) -> None:
    recs = recommend(toy["driver"], "u2", 5, Filters(diversity=0.8), dataset=DS, database=toy["db"])
    ids = [i.item_id for i in recs.items]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert not set(ids) & toy["seen"]["u2"]
    assert set(ids) <= set(expected(toy, toy["users"]["u2"], 20, toy["seen"]["u2"]))


def test_every_explanation_path_exists(toy: dict[str, Any]) -> None:
    d, db = toy["driver"], toy["db"]
    kinds: set[str] = set()
    for user in ("u1", "u4", "u8", "u12"):
        recs = recommend(d, user, 10, dataset=DS, database=db)
        exps = explain(d, [i.item_id for i in recs.items], dataset=DS, user_id=user, max_reasons=4, database=db)
        assert set(exps) == {i.item_id for i in recs.items}
        for item_id, exp in exps.items():
            assert exp.sentence
            for reason in exp.reasons:
                kinds.add(reason.kind)
                assert verify_reason(d, reason, dataset=DS, user_id=user, item_id=item_id, database=db), (user, item_id, reason)
                assert 0.0 <= reason.weight <= 1.0
                if reason.anchor_item_id is not None:
                    assert reason.anchor_item_id != item_id
    assert {"collaborative", "content", "popularity", "semantic"} <= kinds


def test_similar_items_rank_by_dot_product(toy: dict[str, Any]) -> None:
    recs = similar_items(toy["driver"], "i2", 5, dataset=DS, database=toy["db"])
    q = toy["vectors"]["i2"]
    assert [i.item_id for i in recs.items] == expected(toy, q, 5, {"i2"})
    with pytest.raises(UnknownItemError):
        similar_items(toy["driver"], "nope", 5, dataset=DS, database=toy["db"])


def test_cold_start_from_liked_items(toy: dict[str, Any]) -> None:
    liked = ["i1", "i9"]
    recs = recommend_cold_start(toy["driver"], liked, None, 5, dataset=DS, database=toy["db"])
    q = np.mean([toy["vectors"][i] for i in liked], axis=0)
    assert [i.item_id for i in recs.items] == expected(toy, q, 5, set(liked))
    with pytest.raises(UnknownItemError):
        recommend_cold_start(toy["driver"], ["i1", "zzz"], None, 5, dataset=DS, database=toy["db"])
    with pytest.raises(InvalidArgumentError):
        recommend_cold_start(toy["driver"], [], "", 5, dataset=DS, database=toy["db"])


def test_unknown_user_and_new_user_from_feedback(toy: dict[str, Any]) -> None:
    d, db = toy["driver"], toy["db"]
    with pytest.raises(UnknownUserError):
        recommend(d, "ghost", 5, dataset=DS, database=db)
    with pytest.raises(UnknownUserError):
        record_interaction(d, Interaction(user_id="ghost", item_id="i1", rating=5.0), dataset=DS, database=db)
    with pytest.raises(UnknownItemError):
        record_interaction(d, Interaction(user_id="u1", item_id="ghost-item", rating=5.0), dataset=DS, database=db)
    res = record_interaction(d, Interaction(user_id="newcomer", item_id="i4", rating=5.0, create_user=True), dataset=DS, database=db)
    assert res.created_user and res.created_relationship
    recs = recommend(d, "newcomer", 5, dataset=DS, database=db)  # no model vector: served from the liked items
    assert [i.item_id for i in recs.items] == expected(toy, toy["vectors"]["i4"], 5, {"i4"})
