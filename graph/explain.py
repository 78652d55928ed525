"""Explanations: real graph paths, with weights, for every recommended item.

ONE query explains all ``k`` items of a request (set-based: ``UNWIND $item_ids``). The user's
*anchors* are the items they liked (rating >= ``like_threshold``, or implicit feedback), best-rated
and most recent first, at most ``max_anchors``. For every recommended item the query finds:

* **collaborative** — the anchor with the most co-likers relative to both items' audiences:
  ``(u)-[:INTERACTED]->(anchor)<-[:INTERACTED]-(v:User)-[:INTERACTED]->(item)``, both ratings of
  ``v`` >= the threshold. Weight: :math:`c / \\sqrt{|L_a|\\,|L_i|}` with :math:`L` the liker sets
  (the item-item cosine); computed as a hash join of liker sets returned by the one query.
* **content** — the anchor sharing the most attributes:
  ``(u)-[:INTERACTED]->(anchor)-[:HAS_GENRE|HAS_TAG|IN_CATEGORY|HAS_BRAND]->(x)<-[same type]-(item)``.
  Weight: Jaccard of the two attribute sets.
* **semantic** — the anchor whose text vector (``txt_<tag>`` of the active model) is closest:
  ``(u)-[:INTERACTED]->(anchor)`` plus the cosine of the two stored text vectors. Weight:
  ``(cos - 0.3) / 0.7`` (item texts share a template, so ~0.3 is the floor of unrelated items).
* **popularity** — ``(item)<-[:INTERACTED]-(:User)``. Weight: share of the model's users.

Each reason carries its path as nodes and relationships (with the ids needed to re-check it), a
weight in ``[0, 1]`` and a sentence; the ``VERIFY_*`` queries below re-check a reason in the graph.

**Materialised co-likes (the fast path).** Collecting the liker sets of every anchor and every item
costs most of a request. :func:`graph.co_likes.build_co_likes` therefore writes, once per model publication, the
item-item co-like counts as ``(:Item)-[:CO_LIKED {tag, count, weight}]->(:Item)`` (top ``top_n``
partners of every item by the cosine weight, pairs with at least ``min_count`` co-likers) plus one
``(:CoLiked {dataset, tag, gen, like, rels, ...})`` marker. When the marker of the active model is
*fresh* (same generation and like threshold, and the database's INTERACTED relationship count equals
``rels``), :func:`explain` runs :data:`Q_EXPLAIN_FAST_USER`: the collaborative anchor is the user's
liked item (up to ``max_liked``) with the heaviest ``CO_LIKED`` relationship to the recommended item
(a 1-hop lookup over the item's ``top_n`` outgoing ``CO_LIKED``), its count is the stored count (minus the user when they liked the item too) and the
witnesses are stored with the pair; content and semantic reasons are chosen in Cypher, so only the chosen reasons
travel back. Every number stays what ``VERIFY_*`` recomputes from the live graph: feedback written
through :func:`graph.recommend.record_interaction` (the API's ``POST /v1/interactions``) updates, in
its own transaction, the counts, witnesses and weights of the pairs it touches by one
(:func:`graph.co_likes.refresh_co_likes`) and moves ``rels`` on; any other write of INTERACTED
relationships (a load, a feedback write with ``co_likes=False``) changes the relationship count, the marker turns stale and
:func:`explain` falls back to the live liker-set query until the next ``graphrec publish``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read
from graphrec.errors import InvalidArgumentError, NotFoundError, UnknownUserError
from graphrec.vocabulary import ATTRIBUTE_LABEL_BY_REL, attribute_type_list

ReasonKind = Literal["collaborative", "content", "semantic", "popularity", "neighbour"]

ATTRIBUTE_RELS: dict[str, str] = ATTRIBUTE_LABEL_BY_REL
"""Allow-list: attribute relationship type -> attribute label."""


SEMANTIC_MIN_COSINE = 0.4
SEMANTIC_BASELINE = 0.3
"""Item texts share a template (title, genres, tags), so unrelated items already reach cosine ~0.3; the
semantic weight is rescaled as ``(cos - 0.3) / 0.7`` and reasons below cosine 0.4 are dropped."""


class PathNode(BaseModel):
    """A node on an explanation path."""

    label: str = Field(description="User, Item, Genre, Tag, Category or Brand.")
    key: str = Field(description="The node's id (User, Item) or name (attributes).")
    title: str | None = None


class PathRel(BaseModel):
    """A relationship on an explanation path (``start``/``end`` index into ``nodes``)."""

    type: str
    start: int
    end: int
    properties: dict[str, Any] = Field(default_factory=dict)


class Reason(BaseModel):
    """One reason for a recommendation."""

    kind: ReasonKind
    weight: float = Field(ge=0.0, le=1.0)
    text: str
    anchor_item_id: str | None = Field(None, description="The user's item the reason goes through.")
    anchor_rating: float | None = None
    count: int | None = Field(None, description="collaborative: co-likers; popularity: interacting users.")
    shared: list[str] = Field(default_factory=list, description="content: shared attribute names.")
    similarity: float | None = Field(None, description="semantic: cosine of the two text vectors.")
    witnesses: list[str] = Field(default_factory=list, description="collaborative: a few co-liker user ids.")
    nodes: list[PathNode] = Field(default_factory=list)
    rels: list[PathRel] = Field(default_factory=list)


class Explanation(BaseModel):
    """Why one item is recommended: structured reasons plus one sentence."""

    item_id: str
    title: str | None = None
    reasons: list[Reason]
    sentence: str
    method: Literal["materialised", "live"] = Field(
        "live", description="How collaborative reasons were found: 'materialised' (CO_LIKED relationships of the active "
                            "model, kept exact by feedback) or 'live' (liker sets expanded for this request).")


_ANCHORS_USER = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
CALL (u) {
  MATCH (u)-[r:INTERACTED]->(l:Item)
  WHERE r.rating IS NULL OR r.rating >= $like
  WITH l, r ORDER BY coalesce(r.rating, 0.0) DESC, coalesce(r.ts, 0) DESC, l.id
  LIMIT $max_anchors
  RETURN collect({item: l, rating: r.rating}) AS anchors
}
"""

_ANCHORS_ITEMS = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
WITH d, m, null AS u
CALL (d) {
  UNWIND $anchor_ids AS aid
  MATCH (l:Item {dataset: $dataset, gen: d.gen, id: aid})
  RETURN collect({item: l, rating: null}) AS anchors
}
"""

def attr_keys(node: str, rel: str, target: str, types: tuple[str, ...]) -> str:
    """The Cypher list ``type:name`` of ``node``'s attribute relationships of ``types`` (allow-listed,
    backtick-quoted), or ``[]`` when none of them exists: a typed expansion skips the item's other
    relationships, and naming only present types keeps Neo4j from warning about unknown ones."""
    for var in (node, rel, target):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", var):
            raise ValueError(f"bad Cypher variable {var!r}")
    present = [t for t in types if t in ATTRIBUTE_RELS]
    if not present:
        return "[]"
    return f"[({node})-[{rel}:{'|'.join(f'`{t}`' for t in present)}]->({target}) | type({rel}) + ':' + {target}.name]"


# One row: the anchors and the recommended items, each with its likers (users who rated it >= the
# threshold, the requesting user excluded) and attribute keys; text-vector cosines per (item, anchor).
# Co-liker counts are intersections of these liker sets (a hash join done by the caller) rather than a
# (anchor)<-(v)->(item) expansion per pair, which is far cheaper for popular items.
def _per_item(types: tuple[str, ...]) -> str:
    return """
WITH d, m, u, anchors,
     CASE WHEN m IS NULL OR m.text_prop IS NULL THEN [] ELSE [a IN anchors | a.item[m.text_prop]] END AS anchor_text
CALL (d, m, u, anchor_text) {
  UNWIND $item_ids AS iid
  MATCH (rec:Item {dataset: $dataset, gen: d.gen, id: iid})
  WITH rec, CASE WHEN m IS NULL OR m.text_prop IS NULL THEN null ELSE rec[m.text_prop] END AS rec_text
  RETURN collect({
    id: rec.id, title: rec.title, deg: COUNT { (rec)<-[:INTERACTED]-(:User) },
    likers: [(rec)<-[r:INTERACTED]-(v:User) WHERE (u IS NULL OR v <> u) AND (r.rating IS NULL OR r.rating >= $like) | v.id],
    attrs: """ + attr_keys("rec", "a", "x", types) + """,
    sims: CASE WHEN rec_text IS NULL THEN [] ELSE [t IN anchor_text | vector.similarity.cosine(rec_text, t)] END
  }) AS recs
}
CALL (u, anchors) {
  UNWIND anchors AS a
  WITH a, a.item AS l
  RETURN collect({
    id: l.id, title: l.title, rating: a.rating,
    likers: [(l)<-[r:INTERACTED]-(v:User) WHERE (u IS NULL OR v <> u) AND (r.rating IS NULL OR r.rating >= $like) | v.id],
    attrs: """ + attr_keys("l", "x", "t", types) + """
  }) AS anchor_rows
}
RETURN coalesce(m.n_users, 0) AS n_users, recs, anchor_rows AS anchors
"""


_ALL_TYPES = tuple(ATTRIBUTE_RELS)
Q_EXPLAIN_USER = _ANCHORS_USER + _per_item(_ALL_TYPES)
Q_EXPLAIN_ITEMS = _ANCHORS_ITEMS + _per_item(_ALL_TYPES)
"""The live queries with every allow-listed attribute type (:func:`explain` sends them with the types
present in the database, see :func:`attr_query`)."""

def assemble_rows(anchors: list[dict[str, Any]], recs: list[dict[str, Any]], n_users: int, n_witnesses: int = 3) -> list[dict[str, Any]]:
    """Pick, for every recommended item, the best anchor per reason kind (pure; unit-tested).

    collaborative: max :math:`c / \\sqrt{|L_a| |L_i|}` over anchors, :math:`c = |L_a \\cap L_i|` (liker sets);
    content: max Jaccard of attribute sets; semantic: max text cosine.
    """
    prepared = [(a, set(a["likers"]), set(a["attrs"])) for a in anchors]
    rows = []
    for rec in recs:
        likers = set(rec["likers"])
        rec_attrs = set(rec["attrs"])
        collab: list[dict[str, Any]] = []
        content: list[dict[str, Any]] = []
        semantic: list[dict[str, Any]] = []
        best_c = best_j = None
        for a, a_likers, a_attrs in prepared:
            if a["id"] == rec["id"]:
                continue
            co = likers & a_likers
            if co:
                w = len(co) / ((len(likers) * len(a_likers)) ** 0.5)
                if best_c is None or (w, len(co)) > best_c[0]:
                    best_c = ((w, len(co)), {"anchor": a["id"], "title": a["title"], "rating": a["rating"], "co": len(co),
                                              "witnesses": sorted(co)[:n_witnesses], "weight": w})
            shared = rec_attrs & a_attrs
            if shared:
                j = len(shared) / len(rec_attrs | a_attrs)
                key = (j, a["rating"] or 0.0)
                if best_j is None or key > best_j[0]:
                    best_j = (key, {"anchor": a["id"], "title": a["title"], "rating": a["rating"], "shared": sorted(shared), "weight": j})
        if best_c:
            collab.append(best_c[1])
        if best_j:
            content.append(best_j[1])
        sims = [(2.0 * s - 1.0, a) for s, a in zip(rec.get("sims") or [], anchors) if s is not None and a["id"] != rec["id"]]
        if sims:
            cos, a = max(sims, key=lambda t: t[0])
            semantic.append({"anchor": a["id"], "title": a["title"], "rating": a["rating"], "cos": cos})
        rows.append({"id": rec["id"], "title": rec["title"], "rec_deg": rec["deg"], "n_users": n_users,
                     "collab": collab, "content": content, "semantic": semantic})
    return rows


# --- the fast path: materialised co-likes (see the module docstring) ---

CO_LIKED = "CO_LIKED"
CO_LIKED_MARKER = "CoLiked"
STORED_WITNESSES = 4
"""Co-likers stored per pair (one more than shown, so the requesting user can be left out)."""

_FAST_HEAD = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (cl:CoLiked {dataset: $dataset, tag: m.tag})
WHERE cl.gen = d.gen AND cl.like = $like AND cl.rels = COUNT { ()-[:INTERACTED]->() }
"""

_FAST_ANCHORS_USER = _FAST_HEAD + """
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
CALL (u) {
  MATCH (u)-[r:INTERACTED]->(l)
  WITH l, r, r.rating AS rating WHERE rating IS NULL OR rating >= $like
  WITH l, rating ORDER BY coalesce(rating, 0.0) DESC, coalesce(r.ts, 0) DESC, elementId(l)
  LIMIT $max_liked
  RETURN collect(l) AS liked, collect(rating) AS liked_ratings
}
"""

_FAST_ANCHORS_ITEMS = _FAST_HEAD + """
WITH d, m, null AS u
CALL (d) {
  UNWIND $anchor_ids AS aid
  MATCH (l:Item {dataset: $dataset, gen: d.gen, id: aid})
  RETURN collect(l) AS liked
}
WITH d, m, u, liked, [x IN liked | null] AS liked_ratings
"""


# One row per recommended item, carrying only the chosen reasons: the collaborative anchor is the
# liked item with the heaviest CO_LIKED relationship (1-hop), witnesses are stored with the pair;
# content = best Jaccard over the first max_anchors liked items; semantic = best text cosine.
def _fast_prep(types: tuple[str, ...]) -> str:
    return """
WITH d, m, u, liked, liked_ratings, liked[0..$max_anchors] AS anchors
WITH d, m, u, liked, liked_ratings, anchors,
     [a IN anchors | """ + attr_keys("a", "x", "t", types) + """] AS anchor_attrs,
     CASE WHEN m.text_prop IS NULL THEN [] ELSE [a IN anchors | a[m.text_prop]] END AS anchor_text
"""


_FAST_FROM_IDS = """
UNWIND $item_ids AS iid
MATCH (rec:Item {dataset: $dataset, gen: d.gen, id: iid})
"""
_SELF_LIKED = "CASE WHEN u IS NOT NULL AND EXISTS { (u)-[r:INTERACTED]->(rec) WHERE r.rating IS NULL OR r.rating >= $like } THEN 1 ELSE 0 END"


def _fast_reasons(types: tuple[str, ...], carry: str = "", self_liked: str = _SELF_LIKED) -> str:
    """The per-item reasons of the materialised path.

    Args:
        types: Attribute relationship types present.
        carry: Extra variables carried through every ``WITH`` and returned first (e.g. ``"rrow, "``).
        self_liked: Cypher for 1 when the requesting user likes the item (their own like is not a co-like).
    """
    keep = "d, m, u, " + carry + "liked, liked_ratings, anchors, anchor_attrs, anchor_text, rec"
    return (
        "\nWITH " + keep + ",\n     " + attr_keys("rec", "x", "t", types) + """ AS rec_attrs,
     CASE WHEN m.text_prop IS NULL THEN null ELSE rec[m.text_prop] END AS rec_text,
     """ + self_liked + """ AS self
WITH """ + keep + """, rec_attrs, rec_text,
     COLLECT {
       MATCH (rec)-[c:CO_LIKED]->(a:Item)
       WHERE c.tag = m.tag AND a <> rec AND c.count - self > 0 AND a IN liked
       RETURN {a: a, count: c.count - self, weight: c.weight, witnesses: c.witnesses} AS x
       ORDER BY c.weight DESC, c.count DESC, a.id LIMIT 1
     } AS co
WITH """ + keep + """, rec_attrs, rec_text, head(co) AS best
WITH """ + keep + """, rec_attrs, rec_text, best, best.a AS ba
RETURN """ + carry + """rec.id AS id, rec.title AS title, COUNT { (rec)<-[:INTERACTED]-() } AS deg,
  CASE WHEN ba IS NULL THEN null ELSE {
    anchor: ba.id, title: ba.title, co: best.count, weight: best.weight,
    rating: [k IN range(0, size(liked) - 1) WHERE liked[k] = ba | liked_ratings[k]][0],
    witnesses: [w IN best.witnesses WHERE u IS NULL OR w <> u.id][0..$n_witnesses]
  } END AS collab,
  COLLECT {
    UNWIND range(0, size(anchors) - 1) AS j
    WITH j, [x IN rec_attrs WHERE x IN anchor_attrs[j]] AS shared
    WHERE size(shared) > 0 AND anchors[j] <> rec
    WITH j, shared, toFloat(size(shared)) / (size(rec_attrs) + size(anchor_attrs[j]) - size(shared)) AS weight
    ORDER BY weight DESC, coalesce(liked_ratings[j], 0.0) DESC, j LIMIT 1
    RETURN {anchor: anchors[j].id, title: anchors[j].title, rating: liked_ratings[j], shared: shared, weight: weight} AS x
  } AS content,
  COLLECT {
    UNWIND range(0, size(anchor_text) - 1) AS j
    WITH j WHERE rec_text IS NOT NULL AND anchor_text[j] IS NOT NULL AND anchors[j] <> rec
    WITH j, 2.0 * vector.similarity.cosine(rec_text, anchor_text[j]) - 1.0 AS cos
    ORDER BY cos DESC, j LIMIT 1
    RETURN {anchor: anchors[j].id, title: anchors[j].title, rating: liked_ratings[j], cos: cos} AS x
  } AS semantic,
  coalesce(m.n_users, 0) AS n_users
""")


def _fast_per_item(types: tuple[str, ...]) -> str:
    return _fast_prep(types) + _FAST_FROM_IDS + _fast_reasons(types)


Q_EXPLAIN_FAST_USER = _FAST_ANCHORS_USER + _fast_per_item(_ALL_TYPES)
Q_EXPLAIN_FAST_ITEMS = _FAST_ANCHORS_ITEMS + _fast_per_item(_ALL_TYPES)

_TYPES_TTL_S = 60.0
_types_seen: dict[tuple[int, str], tuple[float, tuple[str, ...]]] = {}


@lru_cache(maxsize=64)
def attr_query(kind: str, for_user: bool, types: tuple[str, ...]) -> str:
    """An explanation query (``fast``: materialised co-likes, ``live``: liker sets) whose attribute
    patterns name only ``types`` (allow-listed, backtick-quoted)."""
    types = tuple(t for t in types if t in ATTRIBUTE_RELS)
    if kind == "fast":
        return (_FAST_ANCHORS_USER if for_user else _FAST_ANCHORS_ITEMS) + _fast_per_item(types)
    if kind == "live":
        return (_ANCHORS_USER if for_user else _ANCHORS_ITEMS) + _per_item(types)
    raise ValueError(f"unknown explanation query kind {kind!r}")


@lru_cache(maxsize=16)
def explained_query(recommend_query: str, columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    """One query for a user's recommendations AND their materialised explanations (one round trip).

    ``recommend_query`` runs as a subquery once the user's anchors are gathered, with ``d``, ``m`` and
    ``u`` in scope (it may match them again); each of its rows (one per recommended item, with the
    ``columns``, among them ``id``) travels as the map ``rrow`` through the per-item reasons of
    :data:`Q_EXPLAIN_FAST_USER`, and every result row holds ``rrow`` next to that query's columns.
    No row at all when the co-likes are stale: the caller then runs the two queries separately.
    """
    types = tuple(t for t in types if t in ATTRIBUTE_RELS)
    carry = "{" + ", ".join(f"`{c}`: `{c}`" for c in columns) + "}"
    # the recommended items are unseen (exclude_seen): never liked by the user themselves
    reasons = _fast_reasons(types, carry="rrow, ", self_liked="0")
    return (_FAST_ANCHORS_USER + _fast_prep(types) + "CALL (d, m, u) {\n" + recommend_query + "}\n"
            + f"WITH d, m, u, liked, liked_ratings, anchors, anchor_attrs, anchor_text, {carry} AS rrow\n"
            + "MATCH (rec:Item {dataset: $dataset, gen: d.gen, id: rrow.id})\n" + reasons)


def _present_attr_types(driver: neo4j.Driver, database: str) -> tuple[str, ...]:
    """Attribute relationship types present in the database (cached for a minute per driver)."""
    import time

    key = (id(driver), database)
    hit = _types_seen.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _TYPES_TTL_S:
        return hit[1]
    rows = read(driver, "CALL db.relationshipTypes() YIELD relationshipType RETURN collect(relationshipType) AS types", {}, database)
    types = tuple(t for t in ATTRIBUTE_RELS if rows and t in rows[0]["types"])
    _types_seen[key] = (now, types)
    return types

Q_USER_EXISTS = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN u IS NOT NULL AS ok
"""

# --- re-checking a reason in the graph (used by tests and shown in docs/api.md) ---

VERIFY_COLLABORATIVE = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[r0:INTERACTED]->(l:Item {dataset: $dataset, gen: d.gen, id: $anchor_id})
MATCH (l)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WHERE v <> u AND (r1.rating IS NULL OR r1.rating >= $like) AND (r2.rating IS NULL OR r2.rating >= $like)
RETURN count(v) AS co, collect(v.id) AS users
"""

VERIFY_CONTENT = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[:INTERACTED]->(l:Item {dataset: $dataset, gen: d.gen, id: $anchor_id})
MATCH (l)-[a1]->(x)<-[a2]-(i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WHERE type(a1) = type(a2) AND type(a1) IN """ + attribute_type_list() + """
  AND NOT x:User AND NOT x:Item
RETURN collect(type(a1) + ':' + x.name) AS shared
"""

VERIFY_SEMANTIC = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[:INTERACTED]->(l:Item {dataset: $dataset, gen: d.gen, id: $anchor_id})
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
RETURN 2.0 * vector.similarity.cosine(l[m.text_prop], i[m.text_prop]) - 1.0 AS cos
"""

VERIFY_POPULARITY = """
MATCH (d:Dataset {name: $dataset})
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})<-[:INTERACTED]-(v:User)
RETURN count(v) AS n
"""


def _fmt_rating(r: float | None) -> str:
    if r is None:
        return "liked"
    return f"rated {r:g}/5"


def _attr_name(key: str) -> tuple[str, str]:
    rel, _, name = key.partition(":")
    return rel, name


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _clause(kind: str, text: str) -> str:
    if kind == "semantic":
        return text
    if kind == "content":
        return "it " + text
    return "it is " + text


def _node(label: str, key: str, title: str | None = None) -> dict[str, Any]:
    """A :class:`PathNode` as a plain dict (every field, in the model's order)."""
    return {"label": label, "key": key, "title": title}


def _rel(type_: str, start: int, end: int, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """A :class:`PathRel` as a plain dict (every field, in the model's order)."""
    return {"type": type_, "start": start, "end": end, "properties": properties if properties is not None else {}}


def _reason(kind: ReasonKind, weight: float, text: str, nodes: list[dict[str, Any]], rels: list[dict[str, Any]], *,
            anchor: str | None = None, rating: float | None = None, count: int | None = None, shared: list[str] | None = None,
            similarity: float | None = None, witnesses: list[str] | None = None) -> dict[str, Any]:
    """A :class:`Reason` as a plain dict (every field, in the model's order; the weight clipped to [0, 1])."""
    return {"kind": kind, "weight": min(1.0, max(0.0, weight)), "text": text, "anchor_item_id": anchor, "anchor_rating": rating,
            "count": count, "shared": shared if shared is not None else [], "similarity": similarity,
            "witnesses": witnesses if witnesses is not None else [], "nodes": nodes, "rels": rels}


def explanation_dict(row: dict[str, Any], user_id: str | None, max_reasons: int, method: str = "live") -> dict[str, Any]:
    """One row of the explanation query as an :class:`Explanation` in plain dicts (pure; unit-tested).

    Every field of every model is present, in the models' order, so the dict serialises to the same
    JSON as the validated model (``Explanation.model_validate(d).model_dump() == d``, a unit test
    checks it). The serving path writes these dicts straight into the response; everything else
    takes :func:`build_reasons`.
    """
    item_id, title = row["id"], row["title"]
    reasons: list[dict[str, Any]] = []
    user_node = _node("User", user_id) if user_id is not None else None
    rec_node = _node("Item", item_id, title)

    def anchor_head(anchor: str, a_title: str | None, rating: float | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if user_node is None:
            return [_node("Item", anchor, a_title)], []
        return [user_node, _node("Item", anchor, a_title)], [_rel("INTERACTED", 0, 1, {"rating": rating})]

    for c in row.get("collab") or []:
        if not c or not c.get("co"):
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        a_idx = len(nodes) - 1
        if c["witnesses"]:
            nodes.append(_node("User", str(c["witnesses"][0])))
            nodes.append(rec_node)
            rels.append(_rel("INTERACTED", a_idx + 1, a_idx))
            rels.append(_rel("INTERACTED", a_idx + 1, a_idx + 2))
        users = "user" if c["co"] == 1 else "users"
        # implicit feedback (no rating, e.g. check-ins): "liked", never a rating nobody gave
        how = f"liked {c['title'] or c['anchor']}" if user_id is None or c["rating"] is None else f"rated {c['title'] or c['anchor']} {c['rating']:g}/5 like you"
        text = f"liked by {c['co']} {users} who also {how}" if user_id is not None else f"liked by {c['co']} {users} who also liked {c['title'] or c['anchor']}"
        reasons.append(_reason("collaborative", float(c["weight"]), text, nodes, rels, anchor=c["anchor"], rating=c["rating"],
                               count=int(c["co"]), witnesses=[str(w) for w in c["witnesses"]]))
    for c in row.get("content") or []:
        if not c or not c.get("shared"):
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        a_idx = len(nodes) - 1
        names = []
        attr_nodes: list[tuple[int, str]] = []
        for key in c["shared"]:
            rel, name = _attr_name(key)
            if rel not in ATTRIBUTE_RELS:
                continue
            nodes.append(_node(ATTRIBUTE_RELS[rel], name))
            attr_nodes.append((len(nodes) - 1, rel))
            rels.append(_rel(rel, a_idx, len(nodes) - 1))
            names.append(name)
        nodes.append(rec_node)
        r_idx = len(nodes) - 1
        rels.extend(_rel(rel, r_idx, x) for x, rel in attr_nodes)
        who = f"which you {_fmt_rating(c['rating'])}" if user_id is not None else "which you like"
        text = f"shares {_join(names[:4])}{' and more' if len(names) > 4 else ''} with {c['title'] or c['anchor']}, {who}"
        reasons.append(_reason("content", float(c["weight"]), text, nodes, rels, anchor=c["anchor"], rating=c["rating"], shared=names))
    for c in row.get("semantic") or []:
        if not c or c.get("cos") is None or c["cos"] < SEMANTIC_MIN_COSINE:
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        nodes.append(rec_node)
        rels.append(_rel("TEXT_SIMILAR", len(nodes) - 2, len(nodes) - 1, {"cosine": round(float(c["cos"]), 4), "computed": True}))
        reasons.append(_reason("semantic", (float(c["cos"]) - SEMANTIC_BASELINE) / (1.0 - SEMANTIC_BASELINE),
                               f"its description is close to {c['title'] or c['anchor']}'s (cosine {c['cos']:.2f})", nodes, rels,
                               anchor=c["anchor"], rating=c["rating"], similarity=float(c["cos"])))
    deg, n_users = int(row.get("rec_deg") or 0), int(row.get("n_users") or 0)
    if deg > 0:
        share = deg / n_users if n_users else 0.0
        reasons.append(_reason("popularity", share, f"popular with {deg} user{'' if deg == 1 else 's'}" + (f" ({share:.1%} of all users)" if n_users else ""),
                               [rec_node, _node("User", "*")], [_rel("INTERACTED", 1, 0, {"count": deg})], count=deg))
    reasons.sort(key=lambda r: r["weight"], reverse=True)
    reasons = reasons[:max_reasons]
    if reasons:
        sentence = f"{title or item_id}: recommended because " + _join([_clause(r["kind"], r["text"]) for r in reasons]) + "."
    else:
        sentence = f"{title or item_id}: recommended by embedding similarity alone (no supporting path found)."
    return {"item_id": item_id, "title": title, "reasons": reasons, "sentence": sentence, "method": method}


def build_reasons(row: dict[str, Any], user_id: str | None, max_reasons: int, method: str = "live") -> Explanation:
    """Turn one row of the explanation query into an :class:`Explanation` (:func:`explanation_dict`, validated once:
    pydantic-core validates the nested dicts in one call, ~5x faster than constructing every node model in Python)."""
    return Explanation.model_validate(explanation_dict(row, user_id, max_reasons, method))


def _fast_rows(rows: list[Any]) -> list[dict[str, Any]]:
    """Rows of :data:`Q_EXPLAIN_FAST_USER` in the shape :func:`build_reasons` takes."""
    out = []
    for r in rows:
        collab = []
        c = r["collab"]
        if c is not None and c["co"] and c["witnesses"]:
            collab.append({**c, "witnesses": sorted(str(w) for w in c["witnesses"])})
        out.append({"id": r["id"], "title": r["title"], "rec_deg": r["deg"], "n_users": r["n_users"],
                    "collab": collab, "content": list(r["content"]), "semantic": list(r["semantic"])})
    return out


def explain(
    driver: neo4j.Driver,
    item_ids: Sequence[str],
    *,
    dataset: str,
    user_id: str | None = None,
    anchor_item_ids: Sequence[str] | None = None,
    max_reasons: int = 3,
    max_anchors: int = 15,
    max_liked: int = 200,
    like_threshold: float = 4.0,
    n_witnesses: int = 3,
    database: str = "neo4j",
) -> dict[str, Explanation]:
    """Explain why ``item_ids`` fit ``user_id`` (or someone who likes ``anchor_item_ids``) with ONE query.

    With a fresh co-like materialisation of the active model (:func:`graph.co_likes.build_co_likes`) the fast query
    answers (:func:`explain_materialised`); otherwise the liker-set query does (:func:`explain_from_likers`).

    Args:
        max_anchors (int, optional): Liked items compared for content and semantic reasons (and, on
            the live path, collaborative ones). (default: ``15``)
        max_liked (int, optional): Fast path: liked items searched for the collaborative anchor. (default: ``200``)

    Returns:
        ``item_id -> Explanation`` for every item found (unknown item ids are left out).

    Raises:
        UnknownUserError: ``user_id`` is not in the dataset.
        InvalidArgumentError: Neither a user nor anchor items, or ``max_reasons`` out of range.
    """
    if not 1 <= max_reasons <= 4:
        raise InvalidArgumentError("max_reasons must be in 1..4")
    if not item_ids:
        return {}
    if user_id is None and anchor_item_ids is None:
        raise InvalidArgumentError("explain needs a user_id or anchor_item_ids")
    params: dict[str, Any] = {"dataset": dataset, "item_ids": list(item_ids), "like": like_threshold, "max_anchors": max_anchors}
    who: dict[str, Any] = {"user_id": user_id} if user_id is not None else {"anchor_ids": list(anchor_item_ids or [])}
    found = explain_materialised(driver, item_ids, dataset=dataset, user_id=user_id, anchor_item_ids=anchor_item_ids,
                                 max_reasons=max_reasons, max_anchors=max_anchors, max_liked=max_liked, like_threshold=like_threshold,
                                 n_witnesses=n_witnesses, database=database)
    if found is not None:
        return found
    return explain_from_likers(driver, item_ids, dataset=dataset, user_id=user_id, anchor_item_ids=anchor_item_ids,
                               max_reasons=max_reasons, max_anchors=max_anchors, like_threshold=like_threshold,
                               n_witnesses=n_witnesses, database=database)


def _explain_params(dataset: str, item_ids: Sequence[str], user_id: str | None, anchor_item_ids: Sequence[str] | None,
                    like_threshold: float, max_anchors: int) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {"dataset": dataset, "item_ids": list(item_ids), "like": like_threshold, "max_anchors": max_anchors}
    who: dict[str, Any] = {"user_id": user_id} if user_id is not None else {"anchor_ids": list(anchor_item_ids or [])}
    return params, who


def explain_materialised(
    driver: neo4j.Driver, item_ids: Sequence[str], *, dataset: str, user_id: str | None = None,
    anchor_item_ids: Sequence[str] | None = None, max_reasons: int = 3, max_anchors: int = 15, max_liked: int = 200,
    like_threshold: float = 4.0, n_witnesses: int = 3, database: str = "neo4j",
) -> dict[str, Explanation] | None:
    """The explanation source over the materialised co-likes (``CO_LIKED`` of the active model); ``None``
    when they are missing or stale (then :func:`explain_from_likers` answers)."""
    params, who = _explain_params(dataset, item_ids, user_id, anchor_item_ids, like_threshold, max_anchors)
    fast = attr_query("fast", user_id is not None, _present_attr_types(driver, database))
    rows = read(driver, fast, {**params, **who, "max_liked": max_liked, "n_witnesses": n_witnesses}, database)
    if not rows:
        return None
    return {r["id"]: build_reasons(r, user_id, max_reasons, "materialised") for r in _fast_rows(rows)}


def explain_from_likers(
    driver: neo4j.Driver, item_ids: Sequence[str], *, dataset: str, user_id: str | None = None,
    anchor_item_ids: Sequence[str] | None = None, max_reasons: int = 3, max_anchors: int = 15, like_threshold: float = 4.0,
    n_witnesses: int = 3, database: str = "neo4j",
) -> dict[str, Explanation]:
    """The explanation source that expands the liker sets of this request (no materialisation needed).

    Raises:
        UnknownUserError: ``user_id`` is not in the dataset.
    """
    params, who = _explain_params(dataset, item_ids, user_id, anchor_item_ids, like_threshold, max_anchors)
    types = _present_attr_types(driver, database)
    if user_id is not None:
        rows = read(driver, attr_query("live", True, types), {**params, **who}, database)
        if not rows:
            chk = read(driver, Q_USER_EXISTS, {"dataset": dataset, "user_id": user_id}, database)
            if not chk:
                raise NotFoundError(f"dataset {dataset!r} is not loaded")
            if not chk[0]["ok"]:
                raise UnknownUserError(f"unknown user {user_id!r} in dataset {dataset!r}")
    else:
        rows = read(driver, attr_query("live", False, types), {**params, **who}, database)
    if not rows:
        return {}
    row = rows[0]
    assembled = assemble_rows(row["anchors"], row["recs"], int(row["n_users"] or 0), n_witnesses)
    return {r["id"]: build_reasons(r, user_id, max_reasons) for r in assembled}


def verify_reason(
    driver: neo4j.Driver, reason: Reason, *, dataset: str, user_id: str, item_id: str, like_threshold: float = 4.0, database: str = "neo4j",
) -> bool:
    """Re-check ``reason`` against the graph with the ``VERIFY_*`` queries (True when the path exists as stated)."""
    p = {"dataset": dataset, "user_id": user_id, "item_id": item_id, "anchor_id": reason.anchor_item_id, "like": like_threshold}
    if reason.kind == "collaborative":
        rows = read(driver, VERIFY_COLLABORATIVE, p, database)
        return bool(rows) and rows[0]["co"] == reason.count and set(reason.witnesses) <= set(rows[0]["users"])
    if reason.kind == "content":
        rows = read(driver, VERIFY_CONTENT, p, database)
        names = {_attr_name(k)[1] for k in rows[0]["shared"]} if rows else set()
        return bool(reason.shared) and set(reason.shared) <= names
    if reason.kind == "semantic":
        rows = read(driver, VERIFY_SEMANTIC, p, database)
        return bool(rows) and rows[0]["cos"] is not None and abs(rows[0]["cos"] - (reason.similarity or 0.0)) < 1e-4
    rows = read(driver, VERIFY_POPULARITY, p, database)
    return bool(rows) and rows[0]["n"] == reason.count
