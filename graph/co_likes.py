"""Materialised co-likes: ``(:Item)-[:CO_LIKED {tag, count, weight, witnesses}]->(:Item)``.

:func:`build_co_likes` writes, once per model publication, the item-item co-like counts of the
active generation (top ``top_n`` partners of every item by the cosine weight
:math:`c / \\sqrt{|L_a|\\,|L_b|}`, pairs with at least ``min_count`` co-likers) and one
``(:CoLiked {dataset, tag, gen, like, rels, ...})`` marker. :mod:`graph.explain` reads them on its fast
path while the marker is fresh. Feedback keeps them exact incrementally: :func:`graph.feedback.record_interaction`
writes the interaction and, in the same transaction, calls :func:`refresh_co_likes`, which adds or removes
the user as a co-liker of the stored pairs of the item when (and only when) the user's like status of the
item changed, and re-weights the item's pairs from liker counts stored on the items (``Item.co_likers``).
"""

from __future__ import annotations

import logging
from typing import Any

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read, write
from graph.explain import STORED_WITNESSES
from graphrec.errors import NotFoundError

log = logging.getLogger(__name__)


class CoLikeReport(BaseModel):
    """What :func:`build_co_likes` wrote."""

    dataset: str
    tag: str
    like_threshold: float
    top_n: int
    min_count: int
    items: int = Field(description="Items with at least one liker.")
    likes: int = Field(description="INTERACTED relationships counted as likes.")
    relationships: int = Field(description="CO_LIKED relationships written.")
    removed: int = Field(0, description="CO_LIKED relationships of other publications removed.")
    fresh: bool = Field(True, description="False when feedback was written while the counts were taken: the marker is "
                                          "left stale (explanations use the live path); build again.")
    seconds: float


Q_CO_LIKE_STATE = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
RETURN d.gen AS gen, m.tag AS tag, COUNT { ()-[:INTERACTED]->() } AS rels, coalesce(d.like_changes, 0) AS feedback
"""

Q_LIKES = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen})-[r:INTERACTED]->(i:Item)
WHERE i.dataset = $dataset AND i.gen = d.gen AND (r.rating IS NULL OR r.rating >= $like)
RETURN elementId(u) AS u, u.id AS uid, elementId(i) AS i, i.id AS iid
"""

Q_WRITE_CO_LIKED = """
UNWIND $rows AS row
MATCH (a:Item) WHERE elementId(a) = row.a
UNWIND row.nbrs AS nb
MATCH (b:Item) WHERE elementId(b) = nb.b
CREATE (a)-[:CO_LIKED {tag: $tag, count: nb.count, weight: nb.weight, witnesses: nb.witnesses}]->(b)
"""

Q_DELETE_CO_LIKED = """
MATCH (i:Item {dataset: $dataset})-[c:CO_LIKED]->()
WHERE c.tag IN $tags
WITH c LIMIT $batch
DELETE c
RETURN count(*) AS n
"""

# The marker write locks the Dataset node first (the lock every feedback write takes, see
# graph.feedback.Q_RECORD_INTERACTION) and compares its count of like status changes with the one read
# before the likes were: a like added or removed by feedback while the counts were taken (the active
# model already names this tag, but its marker did not exist yet, so nothing kept the counts up to date)
# leaves the marker stale (rels -1: explanations use the live path) instead of blessing counts that may
# have missed it. (A relationship created meanwhile makes it stale anyway: rels was read before.)
Q_CO_LIKE_MARKER = """
MATCH (d:Dataset {name: $dataset})
SET d.feedback_writes = coalesce(d.feedback_writes, 0)
WITH d, coalesce(d.like_changes, 0) = $feedback AS unchanged
MERGE (cl:CoLiked {dataset: $dataset, tag: $tag})
SET cl.gen = $gen, cl.like = $like, cl.rels = CASE WHEN unchanged THEN $rels ELSE -1 END, cl.top_n = $top_n,
    cl.min_count = $min_count, cl.relationships = $relationships, cl.built_at = datetime()
WITH cl, unchanged
OPTIONAL MATCH (old:CoLiked {dataset: $dataset}) WHERE old.tag <> $tag
WITH unchanged, collect(old.tag) AS old_tags, collect(old) AS olds
FOREACH (o IN olds | DELETE o)
RETURN old_tags, unchanged
"""

# Liker counts |L_i| on the items (the weights' denominators), written by the build and kept exact by
# feedback; items nobody likes any more lose theirs.
Q_WRITE_LIKERS = """
UNWIND $rows AS row
MATCH (i:Item) WHERE elementId(i) = row.i
SET i.co_likers = row.n
"""
Q_CLEAR_LIKERS = """
MATCH (i:Item {dataset: $dataset, gen: $gen})
WHERE i.co_likers IS NOT NULL AND NOT EXISTS { (i)<-[r:INTERACTED]-() WHERE r.rating IS NULL OR r.rating >= $like }
REMOVE i.co_likers
RETURN count(i) AS n
"""

Q_DROP_MARKER = "MATCH (cl:CoLiked {dataset: $dataset, tag: $tag}) DELETE cl"
Q_MARKER_TAGS = "MATCH (cl:CoLiked {dataset: $dataset}) RETURN collect(cl.tag) AS tags"
# The label and relationship type tokens exist before the first build reads them (a read naming a
# token Neo4j has never seen makes it warn); idempotent.
Q_CREATE_CO_LIKE_TOKENS = "CALL db.createLabel('CoLiked') CALL db.createRelationshipType('CO_LIKED')"

# --- feedback: incremental upkeep (runs inside the feedback write's transaction, after the write) ---
#
# The count of a pair (i, j) is the number of users who like both. A feedback write (u, i) changes a
# count only when u's like status of i changes, and then by exactly one for every stored pair (i, j)
# (either direction) whose partner j u likes. Those pairs are found with a hash join of u's liked
# items with i's CO_LIKED partners (O(likes(u) + pairs(i)), no 2-hop expansion). The liker count of i
# moves by the same one, and every stored pair of i gets its cosine weight c / sqrt(|L_i| |L_j|) from
# the liker counts stored on the items. An item without a stored liker count (a materialisation built
# before they were stored) gets it counted live once, then stored. The caller holds the Dataset lock.
_FEEDBACK_HEAD = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (cl:CoLiked {dataset: $dataset, tag: m.tag})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WITH m, cl, u, i,
     CASE WHEN i.co_likers IS NULL
          THEN COUNT { MATCH (v:User)-[r:INTERACTED]->(i) WHERE r.rating IS NULL OR r.rating >= cl.like RETURN DISTINCT v }
          ELSE i.co_likers + $delta END AS li
SET i.co_likers = li
WITH m, cl, u, i, li
"""
# u now likes i: +1 on the pairs whose partner u likes; u becomes a witness where a slot is free
_FEEDBACK_ADDED = """
CALL (m, cl, u, i) {
  MATCH (u)-[r:INTERACTED]->(j:Item), (i)-[c:CO_LIKED]-(j)
  USING JOIN ON j
  WHERE c.tag = m.tag AND (r.rating IS NULL OR r.rating >= cl.like)
  WITH DISTINCT c
  SET c.count = c.count + 1,
      c.witnesses = CASE WHEN size(coalesce(c.witnesses, [])) < $n_witnesses AND NOT $user_id IN coalesce(c.witnesses, [])
                         THEN coalesce(c.witnesses, []) + $user_id ELSE c.witnesses END
  RETURN count(c) AS updated
}
"""
# u no longer likes i: -1 on the pairs whose partner u likes; where u was a witness, another co-liker
# (read live, LIMIT: the first ones found) takes the slot
_FEEDBACK_REMOVED = """
CALL (m, cl, u, i) {
  MATCH (u)-[r:INTERACTED]->(j:Item), (i)-[c:CO_LIKED]-(j)
  USING JOIN ON j
  WHERE c.tag = m.tag AND (r.rating IS NULL OR r.rating >= cl.like)
  WITH DISTINCT c, j
  SET c.count = c.count - 1
  WITH c, j, $user_id IN coalesce(c.witnesses, []) AS was_witness
  CALL (c, j, was_witness, i, cl) {
    WITH c, j, i, cl WHERE was_witness
    WITH c, j, i, cl, [w IN c.witnesses WHERE w <> $user_id] AS kept
    SET c.witnesses = (kept + COLLECT {
      MATCH (i)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(j)
      WHERE (r1.rating IS NULL OR r1.rating >= cl.like) AND (r2.rating IS NULL OR r2.rating >= cl.like) AND NOT v.id IN kept
      RETURN DISTINCT v.id AS vid LIMIT $n_witnesses
    })[0..$n_witnesses]
  }
  RETURN count(c) AS updated
}
"""
_FEEDBACK_REWEIGHT = """
CALL (m, cl, i, li) {
  MATCH (i)-[c:CO_LIKED]-(j:Item)
  WHERE c.tag = m.tag
  WITH c, j, CASE WHEN j.co_likers IS NULL
                  THEN COUNT { MATCH (v:User)-[r:INTERACTED]->(j) WHERE r.rating IS NULL OR r.rating >= cl.like RETURN DISTINCT v }
                  ELSE j.co_likers END AS lj, j.co_likers IS NULL AS count_lj
  FOREACH (x IN CASE WHEN count_lj THEN [j] ELSE [] END | SET x.co_likers = lj)
  WITH c, CASE WHEN li * lj > 0 THEN toFloat(c.count) / sqrt(toFloat(li * lj)) ELSE 0.0 END AS w
  SET c.weight = CASE WHEN w > 1.0 THEN 1.0 ELSE w END
  RETURN count(c) AS reweighted
}
RETURN updated, reweighted
"""
Q_FEEDBACK_LIKE_ADDED = _FEEDBACK_HEAD + _FEEDBACK_ADDED + _FEEDBACK_REWEIGHT
Q_FEEDBACK_LIKE_REMOVED = _FEEDBACK_HEAD + _FEEDBACK_REMOVED + _FEEDBACK_REWEIGHT


def co_like_pairs(user_idx: Any, item_idx: Any, n_users: int, n_items: int, top_n: int = 50, min_count: int = 2) -> list[list[tuple[int, int, float]]]:
    """Top ``top_n`` co-liked partners of every item (pure; unit-tested).

    With :math:`A` the binary user x item like matrix, the co-like counts are :math:`C = A^\\top A`
    (diagonal dropped) and the weight of a pair is the item-item cosine
    :math:`w_{ij} = C_{ij} / \\sqrt{|L_i|\\,|L_j|}`. Pairs with fewer than ``min_count`` co-likers are
    dropped; ties are broken by the count, then the partner index (:func:`build_co_likes` numbers items
    in id order).

    Args:
        user_idx (array): User index of every like, shape ``[n_likes]``.
        item_idx (array): Item index of every like, shape ``[n_likes]``.

    Returns:
        For every item index, a list of ``(partner index, count, weight)``, heaviest first.
    """
    import numpy as np
    import scipy.sparse as sp

    u = np.asarray(user_idx, dtype=np.int64)
    i = np.asarray(item_idx, dtype=np.int64)
    a = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(n_users, n_items))
    a.data[:] = 1.0  # duplicates (several relationships) count once
    a.sum_duplicates()
    a.data[:] = 1.0
    c = (a.T @ a).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    likers = np.asarray(a.sum(axis=0)).ravel()
    out: list[list[tuple[int, int, float]]] = []
    for row in range(n_items):
        lo, hi = c.indptr[row], c.indptr[row + 1]
        js = c.indices[lo:hi]
        cs = np.rint(c.data[lo:hi]).astype(np.int64)
        keep = cs >= min_count
        js, cs = js[keep], cs[keep]
        if len(js) == 0:
            out.append([])
            continue
        w = cs / np.sqrt(likers[row] * likers[js])
        order = np.lexsort((js, -cs, -w))[:top_n]
        out.append([(int(js[k]), int(cs[k]), float(min(1.0, w[k]))) for k in order])
    return out


def build_co_likes(
    driver: neo4j.Driver,
    dataset: str,
    *,
    tag: str | None = None,
    like_threshold: float = 4.0,
    top_n: int = 50,
    min_count: int = 2,
    batch_size: int = 200,
    database: str = "neo4j",
    progress: Any = None,
) -> CoLikeReport:
    """Materialise the item-item co-like counts of ``dataset`` for the publication ``tag`` (default: the active one).

    Writes ``(:Item)-[:CO_LIKED {tag, count, weight}]->(:Item)`` for the top ``top_n`` partners of every
    item (see :func:`co_like_pairs`) in ``UNWIND`` batches of ``batch_size`` items, then the
    ``(:CoLiked)`` marker (which makes :func:`explain` use them), then removes the relationships and
    markers of other publications of the dataset.

    Raises:
        NotFoundError: The dataset is not loaded.
        ModelNotReadyError: No ``tag`` given and no model is published.
    """
    import time

    import numpy as np

    from graphrec.errors import ModelNotReadyError

    t0 = time.perf_counter()
    state = read(driver, Q_CO_LIKE_STATE, {"dataset": dataset}, database)
    if not state:
        raise NotFoundError(f"dataset {dataset!r} is not loaded")
    tag = tag or state[0]["tag"]
    if not tag:
        raise ModelNotReadyError(f"no model is published for dataset {dataset!r}")
    gen, rels, feedback = state[0]["gen"], state[0]["rels"], state[0]["feedback"]
    # in id order, so that the vocabulary, and with it the tie-break among equal pairs, does not depend
    # on the order the database happens to return the likes in
    likes = sorted(read(driver, Q_LIKES, {"dataset": dataset, "like": like_threshold}, database),
                   key=lambda r: (str(r["iid"]), str(r["uid"])))
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u_idx = [users.setdefault(r["u"], len(users)) for r in likes]
    i_idx = [items.setdefault(r["i"], len(items)) for r in likes]
    pairs = co_like_pairs(u_idx, i_idx, len(users), len(items), top_n=top_n, min_count=min_count)
    eids = list(items)
    uids: dict[int, str] = {}
    for r, k in zip(likes, u_idx):
        uids[k] = str(r["uid"])
    likers_of: list[list[int]] = [[] for _ in items]
    for uk, ik in zip(u_idx, i_idx):
        likers_of[ik].append(uk)
    liker_sets = [np.unique(np.asarray(x, dtype=np.int64)) for x in likers_of]

    def witnesses(a: int, b: int) -> list[str]:
        both = np.intersect1d(liker_sets[a], liker_sets[b], assume_unique=True)
        return sorted(uids[int(x)] for x in both)[:STORED_WITNESSES]

    write(driver, Q_CREATE_CO_LIKE_TOKENS, {}, database)
    old_tags = [t for t in read(driver, Q_MARKER_TAGS, {"dataset": dataset}, database)[0]["tags"] if t != tag]
    # a rerun for the same tag starts clean: its marker goes first (explanations use the live path meanwhile)
    write(driver, Q_DROP_MARKER, {"dataset": dataset, "tag": tag}, database)
    _delete_co_liked(driver, dataset, [tag], database)
    rows = [{"a": eids[k], "nbrs": [{"b": eids[j], "count": c, "weight": w, "witnesses": witnesses(k, j)} for j, c, w in nb]}
            for k, nb in enumerate(pairs) if nb]
    written = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        write(driver, Q_WRITE_CO_LIKED, {"rows": chunk, "tag": tag}, database)
        n = sum(len(r["nbrs"]) for r in chunk)
        written += n
        if progress is not None:
            progress(n)
    liker_rows = [{"i": eids[k], "n": int(len(x))} for k, x in enumerate(liker_sets)]
    for start in range(0, len(liker_rows), 5000):
        write(driver, Q_WRITE_LIKERS, {"rows": liker_rows[start:start + 5000]}, database)
    _write_rows(driver, Q_CLEAR_LIKERS, {"dataset": dataset, "gen": gen, "like": like_threshold}, database)
    marker = _write_rows(driver, Q_CO_LIKE_MARKER, {"dataset": dataset, "tag": tag, "gen": gen, "like": like_threshold, "rels": rels,
                                                    "top_n": top_n, "min_count": min_count, "relationships": written, "feedback": feedback},
                         database)
    fresh = bool(marker and marker[0]["unchanged"])
    if not fresh:
        log.warning("co-likes of %s/%s: feedback was written while the counts were taken; the marker is left stale "
                    "(explanations use the live path) - build again", dataset, tag)
    removed = _delete_co_liked(driver, dataset, old_tags, database) if old_tags else 0
    return CoLikeReport(dataset=dataset, tag=tag, like_threshold=like_threshold, top_n=top_n, min_count=min_count, items=len(items),
                        likes=len(likes), relationships=written, removed=removed, fresh=fresh, seconds=time.perf_counter() - t0)


def _delete_co_liked(driver: neo4j.Driver, dataset: str, tags: list[str], database: str, batch: int = 20_000) -> int:
    removed = 0
    while True:
        n = _write_rows(driver, Q_DELETE_CO_LIKED, {"dataset": dataset, "tags": tags, "batch": batch}, database)[0]["n"]
        removed += n
        if n < batch:
            return removed


def _write_rows(driver: neo4j.Driver, query: str, params: dict[str, Any], database: str) -> list[Any]:
    from neo4j import RoutingControl
    from neo4j import exceptions as neo4j_exc

    from graph.connection import translate_error

    try:
        records, _, _ = driver.execute_query(query, params, database_=database, routing_=RoutingControl.WRITE)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e
    return records


def refresh_co_likes(tx: neo4j.ManagedTransaction, dataset: str, user_id: str, item_id: str, *, delta: int) -> tuple[int, int] | None:
    """Keep the materialised co-likes exact after feedback changed whether ``user_id`` likes ``item_id``.

    Runs inside the feedback write's transaction (:func:`graph.feedback.record_interaction` calls it
    after the write, holding the Dataset lock that serialises feedback). ``delta`` is ``+1`` when the
    user now likes the item and did not before, ``-1`` when they liked it and no longer do. Every
    stored pair (either direction) of the item whose partner the user likes gains or loses the user as
    a co-liker (count, witnesses); the item's stored liker count moves by ``delta`` and every stored
    pair of the item gets its cosine weight again. Cost: one hash join of the user's likes with the
    item's pairs plus one pass over the item's pairs; nothing is expanded two hops (except a witness
    slot the user leaves, which is refilled from the live graph).

    Args:
        tx: The open write transaction that wrote the feedback.
        delta (int): ``+1`` (like added) or ``-1`` (like removed).

    Returns:
        ``(pairs whose count changed, pairs re-weighted)``, or ``None`` when the active model has no
        co-like materialisation.
    """
    if delta not in (1, -1):
        raise ValueError(f"delta must be +1 or -1, got {delta!r}")
    query = Q_FEEDBACK_LIKE_ADDED if delta > 0 else Q_FEEDBACK_LIKE_REMOVED
    rec = tx.run(query, {"dataset": dataset, "user_id": user_id, "item_id": item_id, "delta": delta,
                         "n_witnesses": STORED_WITNESSES}).single()
    return None if rec is None else (int(rec["updated"]), int(rec["reweighted"]))
