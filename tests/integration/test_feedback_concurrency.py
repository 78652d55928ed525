"""Concurrent feedback writers against the real Neo4j: no error, no lost write, no duplicate.

Eight threads write at once through a driver configured like the API's (no transaction retries of
its own): new users (the same new user from several threads at once), ratings that add and remove
likes, and exact replays of other threads' writes. Every (user, item) pair's distinct writes come from
one thread, so its final rating is known; replays carry the same rating and timestamp and may land
anywhere in between. Afterwards every pair has exactly one relationship holding its last rating,
every new user exactly one node, and every stored co-like count, witness list, weight and liker
count equals a recount from the live graph. Writers of one process share a group commit
(graph.feedback.WriteQueue); the same runs once more with writers that do not queue in this process
(as writers in several API processes would): the Dataset lock in Neo4j and the retries keep it exact.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import graph.feedback
from graph.co_likes import build_co_likes
from graph.connection import open_driver, read
from graph.embeddings import publish
from graph.explain import STORED_WITNESSES
from graph.feedback import Interaction, InteractionResult, record_interaction
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graph.schema import ensure_schema
from graphrec.errors import UnknownItemError, UnknownUserError

LIKE = 4.0
THREADS = 8
PER_THREAD = 25

Q_ALL_PAIRS = """
MATCH (m:ActiveModel {dataset: $ds})
MATCH (a:Item {dataset: $ds})-[c:CO_LIKED]->(b:Item) WHERE c.tag = m.tag
WITH a, b, c,
  COLLECT { MATCH (a)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b)
            WHERE (r1.rating IS NULL OR r1.rating >= $like) AND (r2.rating IS NULL OR r2.rating >= $like) RETURN DISTINCT v.id } AS co,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(a) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS la,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(b) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS lb
RETURN a.id AS a, b.id AS b, c.count AS count, c.weight AS weight, c.witnesses AS witnesses, co, la, lb
"""

Q_LIKERS = """
MATCH (i:Item {dataset: $ds}) WHERE i.co_likers IS NOT NULL
RETURN i.id AS id, i.co_likers AS stored,
       COUNT { MATCH (v:User)-[r:INTERACTED]->(i) WHERE r.rating IS NULL OR r.rating >= $like RETURN DISTINCT v } AS live
"""

Q_PAIRS_STORED = """
UNWIND $pairs AS p
OPTIONAL MATCH (u:User {dataset: $ds, id: p[0]})-[r:INTERACTED]->(i:Item {dataset: $ds, id: p[1]})
RETURN p[0] AS u, p[1] AS i, count(r) AS n, collect([r.rating, r.ts]) AS values
"""

Q_USERS = "UNWIND $ids AS id RETURN id, COUNT { (u:User {dataset: $ds, id: id}) } AS n"

Q_MARKER = """
MATCH (m:ActiveModel {dataset: $ds}) MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
RETURN cl.rels AS rels, COUNT { ()-[:INTERACTED]->() } AS live
"""


def _setup(driver: Any, db: str, ds: str, seed: int) -> dict[str, Any]:
    ensure_schema(driver, db)
    g = load_toy_graph(driver, ds, n_users=40, n_items=30, per_user=10, seed=seed, database=db)
    emb = random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=seed, version=f"{ds}-v1")
    publish(driver, emb, ds, database=db, grace_s=0)
    co = build_co_likes(driver, ds, top_n=10, min_count=1, database=db)
    assert co.fresh and co.relationships > 0
    return g


@pytest.fixture
def serving_driver(neo4j_info: Any) -> Iterator[Any]:
    """A driver with the API's serving options: the driver retries no transaction by itself."""
    from api.deps import SERVING_DRIVER_OPTIONS

    driver = open_driver(neo4j_info, verify=True, **SERVING_DRIVER_OPTIONS)
    try:
        yield driver
    finally:
        driver.close()


def _plan(g: dict[str, Any], seed: int) -> tuple[list[list[Interaction]], dict[tuple[str, str], tuple[float | None, int]], list[str]]:
    """Per-thread write lists, the expected final (rating, ts) of every pair, the new users."""
    rng = np.random.default_rng(seed)
    users = list(g["users"])
    items = [i["id"] for i in g["items"]]
    new_users = [f"new{k}" for k in range(6)]
    ratings = [5.0, 1.0, None, 4.0, 2.5, 4.5]
    owner: dict[tuple[str, str], int] = {}
    lists: list[list[Interaction]] = [[] for _ in range(THREADS)]
    ts = 2_000_000
    for k in range(THREADS * PER_THREAD):
        t = k % THREADS
        ts += 1
        roll = rng.random()
        if roll < 0.25:  # a new user: every thread writes some of them, on its own items
            user = new_users[int(rng.integers(0, len(new_users)))]
            item = items[(t * 3 + int(rng.integers(0, 3))) % len(items)]
            create = True
        else:  # a known user; a popular item half of the time (shared co-like pairs)
            user = users[int(rng.integers(0, len(users)))]
            item = items[int(rng.integers(0, 6))] if roll < 0.6 else items[int(rng.integers(0, len(items)))]
            create = False
        pair = (user, item)
        t = owner.setdefault(pair, t)  # the pair's distinct writes all come from its first thread
        lists[t].append(Interaction(user_id=user, item_id=item, rating=ratings[int(rng.integers(0, len(ratings)))], ts=ts,
                                    create_user=create))
    expected = {}
    for lst in lists:
        for it in lst:
            expected[(it.user_id, it.item_id)] = (it.rating, int(it.ts or 0))
    # exact replays of other threads' writes (same rating and ts), spread over the threads
    originals = [it for lst in lists for it in lst]
    for k in range(THREADS * 5):
        it = originals[int(rng.integers(0, len(originals)))]
        lists[(k * 3) % THREADS].insert(int(rng.integers(0, len(lists[(k * 3) % THREADS]) + 1)), it.model_copy())
    return lists, expected, new_users


def _run(driver: Any, db: str, ds: str, lists: list[list[Interaction]]) -> tuple[list[BaseException], list[InteractionResult]]:
    errors: list[BaseException] = []
    results: list[InteractionResult] = []
    barrier = threading.Barrier(len(lists))

    def worker(chunk: list[Interaction]) -> None:
        try:
            barrier.wait(timeout=60)
            for it in chunk:
                results.append(record_interaction(driver, it, dataset=ds, database=db))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "writers did not finish"
    return errors, results


def _assert_co_likes_exact(driver: Any, db: str, ds: str, marker: bool = True) -> None:
    pairs = read(driver, Q_ALL_PAIRS, {"ds": ds, "like": LIKE}, db)
    assert pairs
    for p in pairs:
        live = set(p["co"])
        assert p["count"] == len(live), dict(p)
        w = p["witnesses"]
        assert len(w) == len(set(w)) == min(STORED_WITNESSES, len(live)) and set(w) <= live, dict(p)
        cosine = len(live) / math.sqrt(p["la"] * p["lb"]) if p["la"] * p["lb"] else 0.0
        assert p["weight"] == pytest.approx(min(1.0, cosine), rel=1e-6, abs=1e-12), dict(p)
    for r in read(driver, Q_LIKERS, {"ds": ds, "like": LIKE}, db):
        assert r["stored"] == r["live"], dict(r)
    if marker:  # (the marker counts the relationships of every dataset: only when no other dataset changed)
        fresh = read(driver, Q_MARKER, {"ds": ds}, db)
        assert fresh and fresh[0]["rels"] == fresh[0]["live"], "the co-like marker must stay fresh"


@pytest.mark.parametrize("queue_in_process", [True, False], ids=["one-process", "several-processes"])
def test_concurrent_writers_lose_nothing_and_duplicate_nothing(serving_driver: Any, neo4j_info: Any, queue_in_process: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = neo4j_info.database
    ds = f"toy-concurrent-{'one' if queue_in_process else 'many'}"
    seed = 11 if queue_in_process else 12
    g = _setup(serving_driver, db, ds, seed)
    lists, expected, new_users = _plan(g, seed)
    if not queue_in_process:  # every write gets its own queue: all writers queue on the Dataset lock in Neo4j
        monkeypatch.setattr(graph.feedback, "write_queue", lambda database, dataset: graph.feedback.WriteQueue())
    errors, results = _run(serving_driver, db, ds, lists)
    assert not errors, errors[:3]
    assert len(results) == sum(len(lst) for lst in lists)

    stored = read(serving_driver, Q_PAIRS_STORED, {"ds": ds, "pairs": [list(p) for p in expected]}, db)
    assert len(stored) == len(expected)
    for r in stored:
        assert r["n"] == 1, f"pair {r['u']}, {r['i']} has {r['n']} relationships"
        rating, ts = expected[(r["u"], r["i"])]
        assert r["values"] == [[rating, ts]], (r["u"], r["i"], r["values"], rating, ts)
    counts = {r["id"]: r["n"] for r in read(serving_driver, Q_USERS, {"ds": ds, "ids": new_users}, db)}
    written_new = {it.user_id for lst in lists for it in lst if it.create_user}
    assert written_new and all(counts[u] == 1 for u in written_new), counts
    assert sum(1 for r in results if r.created_user) == len(written_new)  # each new user was created by exactly one write
    assert sum(1 for r in results if r.created_relationship) <= len(expected)
    _assert_co_likes_exact(serving_driver, db, ds)


def test_a_replayed_write_is_a_no_op_with_the_same_answer(serving_driver: Any, neo4j_info: Any) -> None:
    db, ds = neo4j_info.database, "toy-replay"
    g = _setup(serving_driver, db, ds, 13)
    pair = read(serving_driver, """
        MATCH (m:ActiveModel {dataset: $ds})
        MATCH (u:User {dataset: $ds}), (i:Item {dataset: $ds})
        WHERE NOT EXISTS { (u)-[:INTERACTED]->(i) } AND EXISTS { (i)-[c:CO_LIKED]-() WHERE c.tag = m.tag }
          AND COUNT { (u)-[r:INTERACTED]->() WHERE r.rating >= $like } > 2
        RETURN u.id AS u, i.id AS i ORDER BY u, i LIMIT 1""", {"ds": ds, "like": LIKE}, db)[0]
    it = Interaction(user_id=pair["u"], item_id=pair["i"], rating=5.0, ts=3_000_000)
    first = record_interaction(serving_driver, it, dataset=ds, database=db)
    assert first.created_relationship and first.liked_after and not first.replayed and first.co_likes_reweighted
    before = sorted((r["a"], r["b"], r["count"], r["weight"]) for r in read(serving_driver, Q_ALL_PAIRS, {"ds": ds, "like": LIKE}, db))
    writes = read(serving_driver, "MATCH (d:Dataset {name: $ds}) RETURN d.feedback_writes AS n, d.like_changes AS c", {"ds": ds}, db)[0]
    for _ in range(3):
        again = record_interaction(serving_driver, it, dataset=ds, database=db)
        assert again.replayed and not again.created_relationship and not again.created_user
        assert (again.liked_before, again.liked_after) == (True, True) and again.co_likes_updated is None
    after = sorted((r["a"], r["b"], r["count"], r["weight"]) for r in read(serving_driver, Q_ALL_PAIRS, {"ds": ds, "like": LIKE}, db))
    assert after == before
    assert read(serving_driver, "MATCH (d:Dataset {name: $ds}) RETURN d.feedback_writes AS n, d.like_changes AS c", {"ds": ds}, db)[0] == writes
    n = read(serving_driver, Q_PAIRS_STORED, {"ds": ds, "pairs": [[it.user_id, it.item_id]]}, db)[0]
    assert n["n"] == 1 and n["values"] == [[5.0, 3_000_000]]
    # the same rating at another time is a write (the timestamp moves), still one relationship, no co-like change
    later = record_interaction(serving_driver, it.model_copy(update={"ts": 3_000_100}), dataset=ds, database=db)
    assert not later.replayed and not later.created_relationship and later.co_likes_updated is None
    _assert_co_likes_exact(serving_driver, db, ds)


Q_STATE = """
MATCH (d:Dataset {name: $ds})
MATCH (u:User {dataset: $ds})-[r:INTERACTED]->(i:Item {dataset: $ds})
WITH d, collect([u.id, i.id, r.rating, r.ts, r.source]) AS rels
MATCH (m:ActiveModel {dataset: $ds}) MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
RETURN d.feedback_writes AS writes, d.like_changes AS changes, cl.rels AS marker_rels, rels,
       COLLECT { MATCH (a:Item {dataset: $ds})-[c:CO_LIKED]->(b:Item) WHERE c.tag = m.tag
                 RETURN [a.id, b.id, c.count, c.weight, size(c.witnesses)] } AS pairs,
       COLLECT { MATCH (i:Item {dataset: $ds}) WHERE i.co_likers IS NOT NULL RETURN [i.id, i.co_likers] } AS likers
"""


def test_a_batch_answers_and_writes_exactly_what_the_writes_one_by_one_do(serving_driver: Any, neo4j_info: Any) -> None:
    """One group commit (rounds of distinct users, one UNWIND statement each) against the same writes
    sent one at a time, on two copies of one graph: the same answers and the same graph afterwards."""
    db = neo4j_info.database
    seed = 14
    one, batch = "toy-batch-single", "toy-batch-grouped"
    g = _setup(serving_driver, db, one, seed)
    assert _setup(serving_driver, db, batch, seed)["users"] == g["users"]
    users, items = list(g["users"]), [i["id"] for i in g["items"]]
    marker_before = {ds: read(serving_driver, Q_MARKER, {"ds": ds}, db)[0]["rels"] for ds in (one, batch)}
    u, v = users[0], users[1]
    T = 2_000_000  # after every loaded timestamp
    w = [
        Interaction(user_id="fresh", item_id=items[0], rating=5.0, ts=T + 10, create_user=True),   # a new user...
        Interaction(user_id="fresh", item_id=items[1], rating=4.5, ts=T + 11),                     # ...known to its next write
        Interaction(user_id=u, item_id=items[2], rating=5.0, ts=T + 12),
        Interaction(user_id=u, item_id=items[2], rating=5.0, ts=T + 12),                           # an exact replay
        Interaction(user_id=u, item_id=items[2], rating=1.0, ts=T + 13),                           # the like removed
        Interaction(user_id=u, item_id=items[2], rating=5.0, ts=T + 9),                            # older: outdated
        Interaction(user_id=v, item_id=items[2], rating=None, ts=T + 14),                          # implicit: a like
        Interaction(user_id=v, item_id=items[3], rating=2.0, ts=T + 15),
        Interaction(user_id="ghost", item_id=items[4], rating=5.0, ts=T + 16),                     # unknown user
        Interaction(user_id=v, item_id="no-such-item", rating=5.0, ts=T + 17),                     # unknown item
        *(Interaction(user_id=x, item_id=items[k % 6], rating=float(k % 6), ts=T + 20 + k) for k, x in enumerate(users[2:12])),
    ]

    def answer(r: InteractionResult | None) -> Any:
        return None if r is None else r.model_dump()

    singles = []
    for it in w:
        try:
            singles.append(answer(record_interaction(serving_driver, it, dataset=one, database=db)))
        except (UnknownUserError, UnknownItemError):
            singles.append(None)
    queue = graph.feedback.WriteQueue()
    pending = [graph.feedback._Pending(params=graph.feedback.write_params(it, dataset=batch)) for it in w]
    queue._pending.extend(pending[:-1])  # all waiting when the last writer arrives: one batch
    queue.submit(serving_driver, pending[-1], database=db)
    assert all(p.done.is_set() and p.error is None for p in pending)
    grouped = [None if p.result is None else answer(graph.feedback.to_result(it, p.result)) for p, it in zip(pending, w, strict=True)]
    assert grouped == singles
    assert [s is None for s in singles].count(True) == 2 and singles[3]["replayed"] and singles[5]["outdated"]
    assert any(s and s["co_likes_updated"] is not None for s in singles)  # the co-like upkeep ran in both

    def state(ds: str) -> dict[str, Any]:
        row = dict(read(serving_driver, Q_STATE, {"ds": ds}, db)[0])
        row["marker_rels"] -= marker_before[ds]  # the relationships the writes created
        return {k: sorted(v) if isinstance(v, list) else v for k, v in row.items()}

    assert state(batch) == state(one)
    assert state(one)["marker_rels"] > 0
    _assert_co_likes_exact(serving_driver, db, batch, marker=False)
