"""Feedback keeps the materialised co-likes exact, incrementally, against the real Neo4j.

After every kind of feedback (a new like, a repeated rating, a rating lowered below the like
threshold, one raised above it, implicit feedback, a new user, concurrent writers) every stored
``CO_LIKED`` relationship of the dataset is compared with a brute-force recount from the live graph:
count = distinct co-likers, witnesses = that many distinct live co-likers (``min(4, count)``), weight =
the live cosine, each item's stored liker count = its live liker count; the marker stays fresh and every
explanation reason re-checks with the ``VERIFY_*`` queries.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from graph.co_likes import build_co_likes
from graph.connection import read
from graph.embeddings import publish
from graph.explain import STORED_WITNESSES, explain, verify_reason
from graph.feedback import Interaction, record_interaction
from graph.recommend import Filters, recommend_dot
from graph.recommend_fixtures import load_toy_graph, random_embeddings

DS = "toy-feedback"
LIKE = 4.0

Q_ALL_PAIRS = """
MATCH (m:ActiveModel {dataset: $ds})
MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
MATCH (a:Item {dataset: $ds})-[c:CO_LIKED]->(b:Item) WHERE c.tag = m.tag
WITH a, b, c,
  COLLECT { MATCH (a)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b)
            WHERE (r1.rating IS NULL OR r1.rating >= $like) AND (r2.rating IS NULL OR r2.rating >= $like) RETURN DISTINCT v.id } AS co,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(a) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS la,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(b) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS lb
RETURN a.id AS a, b.id AS b, c.count AS count, c.weight AS weight, c.witnesses AS witnesses, co, la, lb
ORDER BY a, b
"""

Q_STORED_LIKERS = """
MATCH (i:Item {dataset: $ds}) WHERE i.co_likers IS NOT NULL
RETURN i.id AS id, i.co_likers AS stored,
       COUNT { MATCH (v:User)-[r:INTERACTED]->(i) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS live
"""

Q_MARKER = """
MATCH (m:ActiveModel {dataset: $ds}) MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
RETURN cl.rels AS rels, COUNT { ()-[:INTERACTED]->() } AS live
"""

Q_RATING = """
MATCH (:User {dataset: $ds, id: $u})-[r:INTERACTED]->(:Item {dataset: $ds, id: $i}) RETURN r.rating AS rating, count(r) AS n
"""


@pytest.fixture(scope="module")
def fb(neo4j_driver: Any, neo4j_info: Any) -> Iterator[dict[str, Any]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=40, n_items=50, per_user=15, seed=5, database=db)
    emb = random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=4, version="fb-v1")
    publish(neo4j_driver, emb, DS, database=db, grace_s=0)
    co = build_co_likes(neo4j_driver, DS, top_n=10, min_count=1, database=db)
    assert co.fresh and co.relationships > 0
    yield {"driver": neo4j_driver, "db": db, "graph": g}


def _pairs(fb: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in read(fb["driver"], Q_ALL_PAIRS, {"ds": DS, "like": LIKE}, fb["db"])]


def _assert_exact(fb: dict[str, Any]) -> dict[tuple[str, str], tuple[int, float]]:
    """Every stored pair equals the live recount; returns ``(a, b) -> (count, weight)``."""
    pairs = _pairs(fb)
    assert pairs
    for p in pairs:
        live = set(p["co"])
        assert p["count"] == len(live), p
        w = p["witnesses"]
        assert len(w) == len(set(w)) == min(STORED_WITNESSES, len(live)) and set(w) <= live, p
        cosine = len(live) / math.sqrt(p["la"] * p["lb"]) if p["la"] * p["lb"] else 0.0
        assert p["weight"] == pytest.approx(min(1.0, cosine), rel=1e-6, abs=1e-12), p
    for r in read(fb["driver"], Q_STORED_LIKERS, {"ds": DS, "like": LIKE}, fb["db"]):
        assert r["stored"] == r["live"], dict(r)
    marker = read(fb["driver"], Q_MARKER, {"ds": DS}, fb["db"])
    assert marker and marker[0]["rels"] == marker[0]["live"], "the marker must stay fresh"
    return {(p["a"], p["b"]): (p["count"], p["weight"]) for p in pairs}


def _assert_explanations_recheck(fb: dict[str, Any], users: list[str]) -> None:
    d, db = fb["driver"], fb["db"]
    for user in users:
        recs = recommend_dot(d, user, 10, Filters(exclude_seen=False), dataset=DS, database=db)
        exps = explain(d, [i.item_id for i in recs.items], dataset=DS, user_id=user, max_reasons=4, database=db)
        assert {e.method for e in exps.values()} == {"materialised"}
        for item_id, exp in exps.items():
            for reason in exp.reasons:
                assert verify_reason(d, reason, dataset=DS, user_id=user, item_id=item_id, database=db), (user, item_id, reason)


def _rating(fb: dict[str, Any], user: str, item: str) -> float | None:
    rows = read(fb["driver"], Q_RATING, {"ds": DS, "u": user, "i": item}, fb["db"])
    return rows[0]["rating"] if rows and rows[0]["n"] else None


def _likes(fb: dict[str, Any], user: str) -> set[str]:
    return {r["id"] for r in read(fb["driver"], """
        MATCH (:User {dataset: $ds, id: $u})-[r:INTERACTED]->(i:Item) WHERE r.rating IS NULL OR r.rating >= $like
        RETURN i.id AS id""", {"ds": DS, "u": user, "like": LIKE}, fb["db"])}


def _unseen_pair(fb: dict[str, Any]) -> tuple[str, str, str]:
    """A stored pair (a, b) and a user who likes b but has no interaction with a."""
    for p in _pairs(fb):
        rows = read(fb["driver"], """
            MATCH (u:User {dataset: $ds})-[r:INTERACTED]->(:Item {dataset: $ds, id: $b})
            WHERE (r.rating IS NULL OR r.rating >= $like) AND NOT EXISTS { (u)-[:INTERACTED]->(:Item {dataset: $ds, id: $a}) }
            RETURN u.id AS u ORDER BY u LIMIT 1""", {"ds": DS, "a": p["a"], "b": p["b"], "like": LIKE}, fb["db"])
        if rows:
            return rows[0]["u"], p["a"], p["b"]
    raise AssertionError("the toy graph has no such pair")


def _write(fb: dict[str, Any], user: str, item: str, rating: float | None, **kw: Any) -> Any:
    return record_interaction(fb["driver"], Interaction(user_id=user, item_id=item, rating=rating, **kw), dataset=DS, database=fb["db"])


def test_build_is_exact_and_stores_liker_counts(fb: dict[str, Any]) -> None:
    _assert_exact(fb)
    n = read(fb["driver"], "MATCH (i:Item {dataset: $ds}) WHERE i.co_likers IS NOT NULL RETURN count(i) AS n", {"ds": DS}, fb["db"])[0]["n"]
    assert n > 0


def test_new_like_then_repeat_then_lowered_then_raised(fb: dict[str, Any]) -> None:
    user, a, b = _unseen_pair(fb)
    before = _assert_exact(fb)
    # new like: (a, b) and (b, a) when stored gain the user
    res = _write(fb, user, a, 5.0)
    assert res.created_relationship and not res.liked_before and res.liked_after and (res.co_likes_updated or 0) >= 1
    touched = res.co_likes_updated
    after = _assert_exact(fb)
    assert after[(a, b)][0] == before[(a, b)][0] + 1
    # the same rating again, and another rating on the same side: nothing moves
    for rating in (5.0, 4.5, 4.0):
        res = _write(fb, user, a, rating)
        assert not res.created_relationship and res.liked_before and res.liked_after and res.co_likes_updated is None
        assert _assert_exact(fb) == after
    # lowered below the threshold: back to the counts and weights before the like
    res = _write(fb, user, a, 2.0)
    assert res.liked_before and not res.liked_after and res.co_likes_updated == touched
    lowered = _assert_exact(fb)
    assert {k: v[0] for k, v in lowered.items()} == {k: v[0] for k, v in before.items()}
    assert {k: v[1] for k, v in lowered.items()} == pytest.approx({k: v[1] for k, v in before.items()}, rel=1e-6)
    # still below: nothing moves; raised above: the like is back
    res = _write(fb, user, a, 3.5)
    assert not res.liked_before and not res.liked_after and res.co_likes_updated is None
    res = _write(fb, user, a, 4.5)
    assert not res.liked_before and res.liked_after
    assert _assert_exact(fb)[(a, b)][0] == before[(a, b)][0] + 1
    _assert_explanations_recheck(fb, [user, "u0", "u1"])


def test_loaded_rating_raised_above_and_lowered_below(fb: dict[str, Any]) -> None:
    # a loaded (not feedback) interaction below the threshold, of an item with stored pairs
    row = read(fb["driver"], """
        MATCH (m:ActiveModel {dataset: $ds})
        MATCH (u:User {dataset: $ds})-[r:INTERACTED {source: 'load'}]->(i:Item {dataset: $ds})
        WHERE r.rating < $like AND EXISTS { (i)-[c:CO_LIKED]-() WHERE c.tag = m.tag }
          AND COUNT { (u)-[r2:INTERACTED]->() WHERE r2.rating >= $like } > 3
        RETURN u.id AS u, i.id AS i ORDER BY u, i LIMIT 1""", {"ds": DS, "like": LIKE}, fb["db"])
    assert row
    user, item = row[0]["u"], row[0]["i"]
    res = _write(fb, user, item, 5.0)
    assert not res.created_relationship and not res.liked_before and res.liked_after
    _assert_exact(fb)
    res = _write(fb, user, item, 0.5)
    assert res.liked_before and not res.liked_after
    _assert_exact(fb)
    _assert_explanations_recheck(fb, [user])


def test_implicit_feedback_counts_as_a_like(fb: dict[str, Any]) -> None:
    user, a, b = _unseen_pair(fb)
    before = _assert_exact(fb)
    res = _write(fb, user, a, None)
    assert res.created_relationship and res.liked_after and res.co_likes_updated
    after = _assert_exact(fb)
    assert after[(a, b)][0] == before[(a, b)][0] + 1
    # an explicit low rating replaces the implicit like
    res = _write(fb, user, a, 1.0)
    assert res.liked_before and not res.liked_after
    _assert_exact(fb)


def test_new_user_feedback(fb: dict[str, Any]) -> None:
    pairs = _pairs(fb)
    a, b = pairs[0]["a"], pairs[0]["b"]
    before = _assert_exact(fb)
    res = _write(fb, "newcomer", a, 5.0, create_user=True)
    assert res.created_user and res.created_relationship and res.liked_after
    assert res.co_likes_updated == 0 and res.co_likes_reweighted  # no other like yet; the item's weights move
    _assert_exact(fb)
    res = _write(fb, "newcomer", b, 4.0)
    assert not res.created_user and res.co_likes_updated
    after = _assert_exact(fb)
    assert after[(a, b)][0] == before[(a, b)][0] + 1
    _assert_explanations_recheck(fb, ["newcomer"])


def test_witness_slot_is_refilled_when_a_witness_stops_liking(fb: dict[str, Any]) -> None:
    # a pair with more co-likers than stored witnesses, and one of its witnesses
    cand = [p for p in _pairs(fb) if p["count"] > STORED_WITNESSES]
    assert cand
    p = cand[0]
    witness = sorted(p["witnesses"])[0]
    res = _write(fb, witness, p["a"], 1.0)
    assert res.liked_before and not res.liked_after
    _assert_exact(fb)
    now = {(q["a"], q["b"]): q for q in _pairs(fb)}[(p["a"], p["b"])]
    assert witness not in now["witnesses"] and len(now["witnesses"]) == STORED_WITNESSES
    _assert_explanations_recheck(fb, [witness])


def test_concurrent_feedback_loses_no_update(fb: dict[str, Any]) -> None:
    """Threads write likes and unlikes at once (several on one item, several by one user, two on one
    (user, item)); the Dataset lock serialises them and every count ends exact."""
    rng = np.random.default_rng(7)
    users = [f"u{k}" for k in range(40)]
    items = sorted({p["a"] for p in _pairs(fb)})[:8]
    jobs: list[tuple[str, str, float | None]] = []
    for k in range(24):
        jobs.append((users[int(rng.integers(0, 12))], items[int(rng.integers(0, len(items)))], [5.0, 1.0, None, 4.0, 2.5][k % 5]))
    jobs += [("u3", items[0], 5.0), ("u3", items[0], 1.0), ("u4", items[1], 4.5), ("u4", items[2], 4.5)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(chunk: list[tuple[str, str, float | None]]) -> None:
        try:
            barrier.wait(timeout=30)
            for user, item, rating in chunk:
                _write(fb, user, item, rating)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(jobs[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    _assert_exact(fb)
    feedback = read(fb["driver"], "MATCH (d:Dataset {name: $ds}) RETURN d.feedback_writes AS n", {"ds": DS}, fb["db"])[0]["n"]
    assert feedback >= len(jobs)
    _assert_explanations_recheck(fb, ["u3", "u4"])


def test_a_failing_upkeep_rolls_the_write_back(fb: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write and upkeep are one transaction: when the upkeep fails, the rating is not written either."""
    import graph.co_likes

    user, a, _ = _unseen_pair(fb)
    before = _assert_exact(fb)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("upkeep failed")

    monkeypatch.setattr(graph.co_likes, "refresh_co_likes", broken)
    with pytest.raises(RuntimeError, match="upkeep failed"):
        _write(fb, user, a, 5.0)
    assert _rating(fb, user, a) is None
    assert _assert_exact(fb) == before


def test_feedback_while_the_counts_are_taken_leaves_the_marker_stale(fb: dict[str, Any]) -> None:
    """A build that feedback overtook does not bless its counts: the marker stays stale (live path,
    exact), and the next build is fresh again."""
    d, db = fb["driver"], fb["db"]
    user, a, _ = _unseen_pair(fb)
    wrote: list[Any] = []

    def progress(n: int) -> None:  # called after every batch of written pairs: feedback arrives mid-build
        if not wrote:
            wrote.append(_write(fb, user, a, 5.0))

    co = build_co_likes(d, DS, top_n=10, min_count=1, batch_size=5, database=db, progress=progress)
    assert wrote and not co.fresh
    recs = recommend_dot(d, user, 5, Filters(exclude_seen=False), dataset=DS, database=db)
    exps = explain(d, [i.item_id for i in recs.items], dataset=DS, user_id=user, max_reasons=4, database=db)
    assert {e.method for e in exps.values()} == {"live"}
    for item_id, exp in exps.items():
        for reason in exp.reasons:
            assert verify_reason(d, reason, dataset=DS, user_id=user, item_id=item_id, database=db)
    co = build_co_likes(d, DS, top_n=10, min_count=1, database=db)
    assert co.fresh
    _assert_exact(fb)
    _assert_explanations_recheck(fb, [user])
    # a rating on the same side of the threshold changes no count: the build stays fresh (and exact)
    rerated: list[Any] = []

    def same_side(n: int) -> None:
        if not rerated:
            rerated.append(_write(fb, user, a, 4.5))

    co = build_co_likes(d, DS, top_n=10, min_count=1, batch_size=5, database=db, progress=same_side)
    assert rerated and rerated[0].liked_before and rerated[0].liked_after and co.fresh
    _assert_exact(fb)
    _assert_explanations_recheck(fb, [user])
