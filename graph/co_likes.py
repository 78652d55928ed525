"""Materialised co-likes: ``(:Item)-[:CO_LIKED {tag, count, weight, witnesses}]->(:Item)``.

:func:`build_co_likes` writes, once per model publication, the item-item co-like counts of the
active generation (top ``top_n`` partners of every item by the cosine weight
:math:`c / \\sqrt{|L_a|\\,|L_b|}`, pairs with at least ``min_count`` co-likers) and one
``(:CoLiked {dataset, tag, gen, like, rels, ...})`` marker. :mod:`graph.explain` reads them on its fast
path while the marker is fresh; :func:`refresh_co_likes` keeps them exact after feedback.
"""

from __future__ import annotations

from typing import Any

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read, write
from graph.explain import STORED_WITNESSES
from graphrec.errors import NotFoundError



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
    seconds: float


Q_CO_LIKE_STATE = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
RETURN d.gen AS gen, m.tag AS tag, COUNT { ()-[:INTERACTED]->() } AS rels
"""

Q_LIKES = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen})-[r:INTERACTED]->(i:Item)
WHERE i.dataset = $dataset AND i.gen = d.gen AND (r.rating IS NULL OR r.rating >= $like)
RETURN elementId(u) AS u, u.id AS uid, elementId(i) AS i
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

Q_CO_LIKE_MARKER = """
MATCH (d:Dataset {name: $dataset})
MERGE (cl:CoLiked {dataset: $dataset, tag: $tag})
SET cl.gen = $gen, cl.like = $like, cl.rels = $rels, cl.top_n = $top_n, cl.min_count = $min_count,
    cl.relationships = $relationships, cl.built_at = datetime()
WITH cl
OPTIONAL MATCH (old:CoLiked {dataset: $dataset}) WHERE old.tag <> $tag
WITH collect(old.tag) AS old_tags, collect(old) AS olds
FOREACH (o IN olds | DELETE o)
RETURN old_tags
"""

Q_MARKER_TAGS = "MATCH (cl:CoLiked {dataset: $dataset}) RETURN collect(cl.tag) AS tags"
# The label and relationship type tokens exist before the first build reads them (a read naming a
# token Neo4j has never seen makes it warn); idempotent.
Q_CREATE_CO_LIKE_TOKENS = "CALL db.createLabel('CoLiked') CALL db.createRelationshipType('CO_LIKED')"

# After feedback (u, i): recompute, from the live graph, the counts of the stored pairs (i, j) whose
# other item j the user likes (the only pairs whose co-liker count can have changed: u counts for
# (i, j) only if u likes j; the weights of i's other pairs drift with |likers(i)| until the next
# publish, they only rank anchors), and
# move the marker's relationship count on by the relationships the write created. The marker is
# updated first, so concurrent refreshes queue on its lock.
Q_REFRESH_CO_LIKES = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (cl:CoLiked {dataset: $dataset, tag: m.tag})
SET cl.rels = cl.rels + $created
WITH d, m, cl
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
CALL (u, i, m, cl) {
  MATCH (i)-[c:CO_LIKED]-(j:Item)
  WHERE c.tag = m.tag AND EXISTS { (u)-[r:INTERACTED]->(j) WHERE r.rating IS NULL OR r.rating >= cl.like }
  WITH i, j, c,
       COUNT { (i)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(j)
               WHERE (r1.rating IS NULL OR r1.rating >= cl.like) AND (r2.rating IS NULL OR r2.rating >= cl.like) } AS n
  SET c.count = n,
      c.witnesses = COLLECT { MATCH (i)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(j)
                              WHERE (r1.rating IS NULL OR r1.rating >= cl.like) AND (r2.rating IS NULL OR r2.rating >= cl.like)
                              RETURN v.id LIMIT $n_witnesses }
  RETURN count(c) AS updated
}
// the item's liker count changed: every stored pair of the item gets its cosine weight again
CALL (i, m, cl) {
  WITH i, m, cl, COUNT { (i)<-[r:INTERACTED]-() WHERE r.rating IS NULL OR r.rating >= cl.like } AS li
  MATCH (i)-[c:CO_LIKED]-(j:Item)
  WHERE c.tag = m.tag
  WITH li, c, COUNT { (j)<-[r:INTERACTED]-() WHERE r.rating IS NULL OR r.rating >= cl.like } AS lj
  SET c.weight = CASE WHEN li * lj > 0 THEN c.count / sqrt(toFloat(li * lj)) ELSE 0.0 END
  RETURN count(c) AS reweighted
}
RETURN updated
"""


def co_like_pairs(user_idx: Any, item_idx: Any, n_users: int, n_items: int, top_n: int = 50, min_count: int = 2) -> list[list[tuple[int, int, float]]]:
    """Top ``top_n`` co-liked partners of every item (pure; unit-tested).

    With :math:`A` the binary user x item like matrix, the co-like counts are :math:`C = A^\\top A`
    (diagonal dropped) and the weight of a pair is the item-item cosine
    :math:`w_{ij} = C_{ij} / \\sqrt{|L_i|\\,|L_j|}`. Pairs with fewer than ``min_count`` co-likers are
    dropped; ties are broken by the count, then the partner index.

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
    gen, rels = state[0]["gen"], state[0]["rels"]
    likes = read(driver, Q_LIKES, {"dataset": dataset, "like": like_threshold}, database)
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
    _delete_co_liked(driver, dataset, [tag], database)  # a rerun for the same tag starts clean
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
    write(driver, Q_CO_LIKE_MARKER, {"dataset": dataset, "tag": tag, "gen": gen, "like": like_threshold, "rels": rels, "top_n": top_n,
                                     "min_count": min_count, "relationships": written}, database)
    removed = _delete_co_liked(driver, dataset, old_tags, database) if old_tags else 0
    return CoLikeReport(dataset=dataset, tag=tag, like_threshold=like_threshold, top_n=top_n, min_count=min_count, items=len(items),
                        likes=len(likes), relationships=written, removed=removed, seconds=time.perf_counter() - t0)


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


def refresh_co_likes(driver: neo4j.Driver, dataset: str, user_id: str, item_id: str, *, created: bool, database: str = "neo4j") -> int | None:
    """Keep the materialised co-likes exact after feedback ``(user_id)-[:INTERACTED]->(item_id)``.

    Call it after the feedback write committed (``created``: the write created a relationship).
    Recomputes, from the live graph, the count and witnesses of every stored pair of ``item_id``
    whose partner the user likes, then the cosine weight of every stored pair of ``item_id`` (its
    liker count changed), and moves the marker's relationship count on.

    Returns:
        The number of pairs recomputed, or ``None`` when the active model has no materialisation.
    """
    rows = _write_rows(driver, Q_REFRESH_CO_LIKES, {"dataset": dataset, "user_id": user_id, "item_id": item_id,
                                                    "created": 1 if created else 0, "n_witnesses": STORED_WITNESSES}, database)
    return int(rows[0]["updated"]) if rows else None
