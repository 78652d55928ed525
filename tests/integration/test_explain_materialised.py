"""Materialised co-likes against the real Neo4j: the fast explanation path answers when the marker is
fresh, every reason it gives re-checks with the VERIFY_* queries, feedback through the API keeps the
stored counts exact, and any other write makes explain fall back to the live path (still exact)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from graph.connection import read
from graph.embeddings import publish
from graph.co_likes import build_co_likes
from graph.explain import explain, verify_reason
from graph.recommend import Filters, Interaction, recommend, recommend_dot, record_interaction
from graph.recommend_explained import recommend_explained
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graphrec.settings import Settings

DS = "toy-colike"
USERS = ("u0", "u3", "u5", "u9", "u14")


@pytest.fixture(scope="module")
def toy(neo4j_driver: Any, neo4j_info: Any) -> Iterator[dict[str, Any]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=30, n_items=60, per_user=14, seed=21, database=db)
    emb = random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=2, version="colike-v1")
    text_rng = np.random.default_rng(9)
    report = publish(neo4j_driver, emb, DS, database=db, text_vectors=lambda ids, texts: text_rng.normal(size=(len(texts), 6)), grace_s=0)
    co = build_co_likes(neo4j_driver, DS, top_n=8, min_count=1, database=db)
    yield {"driver": neo4j_driver, "db": db, "graph": g, "report": report, "co": co}


def _explain_all(toy: dict[str, Any], user: str, **kw: Any) -> tuple[list[str], dict[str, Any]]:
    d, db = toy["driver"], toy["db"]
    recs = recommend_dot(d, user, 10, Filters(exclude_seen=kw.pop("exclude_seen", True)), dataset=DS, database=db)
    items = [i.item_id for i in recs.items]
    return items, explain(d, items, dataset=DS, user_id=user, max_reasons=4, database=db, **kw)


def _assert_verified(toy: dict[str, Any], user: str, exps: dict[str, Any]) -> set[str]:
    kinds: set[str] = set()
    for item_id, exp in exps.items():
        for reason in exp.reasons:
            kinds.add(reason.kind)
            assert verify_reason(toy["driver"], reason, dataset=DS, user_id=user, item_id=item_id, database=toy["db"]), (user, item_id, reason)
            assert 0.0 <= reason.weight <= 1.0
            if reason.anchor_item_id is not None:
                assert reason.anchor_item_id != item_id
    return kinds


def _stored_pairs(toy: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in read(toy["driver"], """
        MATCH (m:ActiveModel {dataset: $ds})
        MATCH (a:Item {dataset: $ds})-[c:CO_LIKED]->(b:Item) WHERE c.tag = m.tag
        RETURN a.id AS a, b.id AS b, c.count AS count, c.witnesses AS witnesses""", {"ds": DS}, toy["db"])]


def test_build_writes_top_n_pairs_with_live_counts(toy: dict[str, Any]) -> None:
    co = toy["co"]
    assert co.tag == toy["report"].model.tag and co.relationships > 0 and co.removed == 0
    pairs = _stored_pairs(toy)
    assert len(pairs) == co.relationships
    per_item: dict[str, int] = {}
    for p in pairs:
        per_item[p["a"]] = per_item.get(p["a"], 0) + 1
        live = read(toy["driver"], """
            MATCH (a:Item {dataset: $ds, id: $a})<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b:Item {dataset: $ds, id: $b})
            WHERE (r1.rating IS NULL OR r1.rating >= 4.0) AND (r2.rating IS NULL OR r2.rating >= 4.0)
            RETURN count(v) AS n, collect(v.id) AS users""", {"ds": DS, "a": p["a"], "b": p["b"]}, toy["db"])[0]
        assert p["count"] == live["n"] and set(p["witnesses"]) <= set(live["users"])
    assert max(per_item.values()) <= 8


def test_fast_path_answers_and_every_reason_rechecks(toy: dict[str, Any]) -> None:
    kinds: set[str] = set()
    for user in USERS:
        items, exps = _explain_all(toy, user)
        assert set(exps) == set(items)
        assert {e.method for e in exps.values()} == {"materialised"}
        kinds |= _assert_verified(toy, user, exps)
    assert {"collaborative", "content", "popularity", "semantic"} <= kinds


@pytest.mark.parametrize("reasons", [3, 4])
def test_one_query_path_equals_the_two_calls(toy: dict[str, Any], reasons: int) -> None:
    """recommend_explained (serving list + materialised explanations in one query) answers exactly
    what recommend followed by explain answer, and every reason re-checks."""
    d, db = toy["driver"], toy["db"]
    for user in USERS:
        both = recommend_explained(d, user, 10, dataset=DS, database=db, max_reasons=reasons)
        assert both is not None
        recs, exps = both
        want = recommend(d, user, 10, dataset=DS, database=db)
        assert recs.candidates == "list" and recs.model_dump() == want.model_dump()
        want_exps = explain(d, [i.item_id for i in want.items], dataset=DS, user_id=user, max_reasons=reasons, database=db)
        assert {k: v.model_dump() for k, v in exps.items()} == {k: v.model_dump() for k, v in want_exps.items()}
        assert {e.method for e in exps.values()} == {"materialised"}
        _assert_verified(toy, user, exps)
    # what the list does not cover, and an unknown user: no answer, the caller makes the two calls
    assert recommend_explained(d, USERS[0], 10, Filters(exclude_seen=False), dataset=DS, database=db) is None
    assert recommend_explained(d, "nobody", 10, dataset=DS, database=db) is None


@pytest.mark.parametrize("limit", [1, 0])
def test_api_answers_the_one_query_path_under_its_admission_limit(toy: dict[str, Any], neo4j_info: Any, limit: int) -> None:
    """The route runs the query under the admission limit and builds the answer outside it
    (fetch_explained): concurrent requests, with and without a limit, each get exactly the one-query answer."""
    from concurrent.futures import ThreadPoolExecutor

    d, db = toy["driver"], toy["db"]
    want = {}
    for user in USERS:
        both = recommend_explained(d, user, 10, dataset=DS, database=db, max_reasons=3)
        assert both is not None
        recs, exps = both
        want[user] = [(i.item_id, i.score, exps[i.item_id].model_dump(mode="json")) for i in recs.items]
    app = create_app(Settings(dataset=DS, api_query_concurrency=limit), neo4j_info, startup_wait_s=10)
    with TestClient(app) as client:

        def get(user: str) -> tuple[str, Any]:
            r = client.get(f"/v1/users/{user}/recommendations", params={"k": 10, "explain": "true"})
            assert r.status_code == 200, r.text
            return user, r.json()

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(get, list(USERS) * 3))
    for user, body in answers:
        got = [(i["item_id"], i["score"], i["explanation"]) for i in body["items"]]
        assert [g[0] for g in got] == [w[0] for w in want[user]]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want[user]])
        assert [g[2] for g in got] == [w[2] for w in want[user]]


def test_fast_path_for_cold_start_anchors(toy: dict[str, Any]) -> None:
    d, db = toy["driver"], toy["db"]
    pairs = _stored_pairs(toy)
    anchor, item = pairs[0]["b"], pairs[0]["a"]
    exps = explain(d, [item], dataset=DS, anchor_item_ids=[anchor], max_reasons=4, database=db)
    assert exps[item].method == "materialised"
    collab = [r for r in exps[item].reasons if r.kind == "collaborative"]
    assert collab and collab[0].anchor_item_id == anchor and collab[0].count == pairs[0]["count"]
    assert set(collab[0].witnesses) <= set(pairs[0]["witnesses"])


def test_user_who_liked_the_item_is_not_counted(toy: dict[str, Any]) -> None:
    # exclude_seen=false: items the user liked come back; the stored count includes the user, the reason must not
    for user in USERS[:3]:
        _, exps = _explain_all(toy, user, exclude_seen=False)
        assert {e.method for e in exps.values()} == {"materialised"}
        _assert_verified(toy, user, exps)
        for exp in exps.values():
            for r in exp.reasons:
                if r.kind == "collaborative":
                    assert user not in r.witnesses


def test_api_feedback_refreshes_counts_and_other_writes_fall_back_to_live(toy: dict[str, Any], neo4j_info: Any) -> None:
    d, db = toy["driver"], toy["db"]
    pairs = _stored_pairs(toy)
    # a user who does not yet interact with `a` but likes `b`: liking `a` changes the count of the stored pair (a, b)
    target = None
    for p in pairs:
        rows = read(d, """
            MATCH (u:User {dataset: $ds})-[r:INTERACTED]->(:Item {dataset: $ds, id: $b})
            WHERE (r.rating IS NULL OR r.rating >= 4.0) AND NOT EXISTS { (u)-[:INTERACTED]->(:Item {dataset: $ds, id: $a}) }
            RETURN u.id AS u LIMIT 1""", {"ds": DS, "a": p["a"], "b": p["b"]}, db)
        if rows:
            target = (rows[0]["u"], p)
            break
    assert target is not None
    user, pair = target
    app = create_app(Settings(dataset=DS, max_body_bytes=10_000), neo4j_info, startup_wait_s=10)
    with TestClient(app) as client:
        r = client.post("/v1/interactions", json={"user_id": user, "item_id": pair["a"], "rating": 5.0})
        assert r.status_code == 201 and r.json()["created_relationship"] is True
        after = {(p["a"], p["b"]): p["count"] for p in _stored_pairs(toy)}
        assert after[(pair["a"], pair["b"])] == pair["count"] + 1
        # every stored pair of the item carries the live cosine weight (its liker count changed)
        live_w = read(d, """
            MATCH (m:ActiveModel {dataset: $ds})
            MATCH (a:Item {dataset: $ds})-[c:CO_LIKED]-(b:Item) WHERE c.tag = m.tag AND (a.id = $i)
            WITH a, b, c,
                 COUNT { (a)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b)
                         WHERE (r1.rating IS NULL OR r1.rating >= 4.0) AND (r2.rating IS NULL OR r2.rating >= 4.0) } AS n,
                 COUNT { (a)<-[r:INTERACTED]-() WHERE r.rating IS NULL OR r.rating >= 4.0 } AS la,
                 COUNT { (b)<-[r:INTERACTED]-() WHERE r.rating IS NULL OR r.rating >= 4.0 } AS lb
            RETURN c.count AS count, c.weight AS weight, n, n / sqrt(toFloat(la * lb)) AS cosine""", {"ds": DS, "i": pair["a"]}, db)
        assert live_w and all(r["count"] == r["n"] and r["weight"] == pytest.approx(r["cosine"], rel=1e-9) for r in live_w)
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 10, "explain": "true", "reasons": 4}).json()
        assert body["items"] and {it["explanation"]["method"] for it in body["items"]} == {"materialised"}
    for u in (user, *USERS[:2]):
        _, exps = _explain_all(toy, u)
        assert {e.method for e in exps.values()} == {"materialised"}
        _assert_verified(toy, u, exps)

    # a write that creates a relationship without the co-like upkeep: the marker's relationship count no
    # longer matches -> live path, still exact
    stale_user = USERS[1]
    fresh_item = read(d, """
        MATCH (u:User {dataset: $ds, id: $u}) MATCH (i:Item {dataset: $ds})
        WHERE NOT EXISTS { (u)-[:INTERACTED]->(i) } RETURN i.id AS id ORDER BY id LIMIT 1""", {"ds": DS, "u": stale_user}, db)[0]["id"]
    res = record_interaction(d, Interaction(user_id=stale_user, item_id=fresh_item, rating=4.5), dataset=DS, database=db, co_likes=False)
    assert res.created_relationship and res.co_likes_updated is None
    _, exps = _explain_all(toy, stale_user)
    assert {e.method for e in exps.values()} == {"live"}
    _assert_verified(toy, stale_user, exps)
    assert recommend_explained(d, stale_user, 10, dataset=DS, database=db) is None  # stale co-likes: the two calls answer
    # later feedback with the upkeep does not bless a write it did not see: still live
    record_interaction(d, Interaction(user_id=USERS[2], item_id=pair["a"], rating=1.0), dataset=DS, database=db)
    _, exps = _explain_all(toy, stale_user)
    assert {e.method for e in exps.values()} == {"live"}
    # rebuilding (what `graphrec publish` does) makes the fast path answer again
    co = build_co_likes(d, DS, top_n=8, min_count=1, database=db)
    assert co.relationships > 0
    _, exps = _explain_all(toy, stale_user)
    assert {e.method for e in exps.values()} == {"materialised"}
    _assert_verified(toy, stale_user, exps)


def test_republish_moves_co_likes_to_the_new_model(toy: dict[str, Any]) -> None:
    d, db, g = toy["driver"], toy["db"], toy["graph"]
    old_tag = toy["report"].model.tag
    emb = random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=3, version="colike-v2")
    rep = publish(d, emb, DS, database=db, grace_s=0)
    # the new model has no materialisation yet: live path, exact
    _, exps = _explain_all(toy, USERS[0])
    assert {e.method for e in exps.values()} == {"live"}
    _assert_verified(toy, USERS[0], exps)
    co = build_co_likes(d, DS, top_n=8, min_count=1, database=db)
    assert co.tag == rep.model.tag != old_tag and co.removed > 0
    tags = read(d, "MATCH (:Item {dataset: $ds})-[c:CO_LIKED]->() RETURN collect(DISTINCT c.tag) AS t", {"ds": DS}, db)[0]["t"]
    assert tags == [rep.model.tag]
    _, exps = _explain_all(toy, USERS[0])
    assert {e.method for e in exps.values()} == {"materialised"}
    _assert_verified(toy, USERS[0], exps)
