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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read
from graphrec.errors import InvalidArgumentError, NotFoundError, UnknownUserError

ReasonKind = Literal["collaborative", "content", "semantic", "popularity"]

ATTRIBUTE_RELS: dict[str, str] = {"HAS_GENRE": "Genre", "HAS_TAG": "Tag", "IN_CATEGORY": "Category", "HAS_BRAND": "Brand"}
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

# One row: the anchors and the recommended items, each with its likers (users who rated it >= the
# threshold, the requesting user excluded) and attribute keys; text-vector cosines per (item, anchor).
# Co-liker counts are intersections of these liker sets (a hash join done by the caller) rather than a
# (anchor)<-(v)->(item) expansion per pair, which is far cheaper for popular items.
_PER_ITEM = """
WITH d, m, u, anchors,
     CASE WHEN m IS NULL OR m.text_prop IS NULL THEN [] ELSE [a IN anchors | a.item[m.text_prop]] END AS anchor_text
CALL (d, m, u, anchor_text) {
  UNWIND $item_ids AS iid
  MATCH (rec:Item {dataset: $dataset, gen: d.gen, id: iid})
  WITH rec, CASE WHEN m IS NULL OR m.text_prop IS NULL THEN null ELSE rec[m.text_prop] END AS rec_text
  RETURN collect({
    id: rec.id, title: rec.title, deg: COUNT { (rec)<-[:INTERACTED]-(:User) },
    likers: [(rec)<-[r:INTERACTED]-(v:User) WHERE (u IS NULL OR v <> u) AND (r.rating IS NULL OR r.rating >= $like) | v.id],
    attrs: [(rec)-[a]->(x) WHERE type(a) IN $attr_rels | type(a) + ':' + x.name],
    sims: CASE WHEN rec_text IS NULL THEN [] ELSE [t IN anchor_text | vector.similarity.cosine(rec_text, t)] END
  }) AS recs
}
CALL (u, anchors) {
  UNWIND anchors AS a
  WITH a, a.item AS l
  RETURN collect({
    id: l.id, title: l.title, rating: a.rating,
    likers: [(l)<-[r:INTERACTED]-(v:User) WHERE (u IS NULL OR v <> u) AND (r.rating IS NULL OR r.rating >= $like) | v.id],
    attrs: [(l)-[x]->(t) WHERE type(x) IN $attr_rels | type(x) + ':' + t.name]
  }) AS anchor_rows
}
RETURN coalesce(m.n_users, 0) AS n_users, recs, anchor_rows AS anchors
"""

Q_EXPLAIN_USER = _ANCHORS_USER + _PER_ITEM
Q_EXPLAIN_ITEMS = _ANCHORS_ITEMS + _PER_ITEM


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
WHERE type(a1) = type(a2) AND type(a1) IN ['HAS_GENRE', 'HAS_TAG', 'IN_CATEGORY', 'HAS_BRAND']
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


def _clause(r: Reason) -> str:
    if r.kind == "semantic":
        return r.text
    if r.kind == "content":
        return "it " + r.text
    return "it is " + r.text


def build_reasons(row: dict[str, Any], user_id: str | None, max_reasons: int) -> Explanation:
    """Turn one row of the explanation query into an :class:`Explanation` (pure; unit-tested)."""
    item_id, title = row["id"], row["title"]
    reasons: list[Reason] = []
    user_node = PathNode(label="User", key=user_id) if user_id is not None else None
    rec_node = PathNode(label="Item", key=item_id, title=title)

    def anchor_head(anchor: str, a_title: str | None, rating: float | None) -> tuple[list[PathNode], list[PathRel]]:
        nodes: list[PathNode] = []
        rels: list[PathRel] = []
        if user_node is not None:
            nodes.append(user_node)
        nodes.append(PathNode(label="Item", key=anchor, title=a_title))
        if user_node is not None:
            rels.append(PathRel(type="INTERACTED", start=0, end=1, properties={"rating": rating}))
        return nodes, rels

    for c in row.get("collab") or []:
        if not c or not c.get("co"):
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        a_idx = len(nodes) - 1
        w_node = PathNode(label="User", key=str(c["witnesses"][0])) if c["witnesses"] else None
        if w_node is not None:
            nodes.append(w_node)
            nodes.append(rec_node)
            rels.append(PathRel(type="INTERACTED", start=a_idx + 1, end=a_idx, properties={}))
            rels.append(PathRel(type="INTERACTED", start=a_idx + 1, end=a_idx + 2, properties={}))
        users = "user" if c["co"] == 1 else "users"
        how = f"rated {c['title'] or c['anchor']} highly" if user_id is None or c["rating"] is None else f"rated {c['title'] or c['anchor']} {c['rating']:g}/5 like you"
        text = f"liked by {c['co']} {users} who also {how}" if user_id is not None else f"liked by {c['co']} {users} who also liked {c['title'] or c['anchor']}"
        reasons.append(Reason(kind="collaborative", weight=min(1.0, max(0.0, float(c["weight"]))), text=text, anchor_item_id=c["anchor"],
                              anchor_rating=c["rating"], count=int(c["co"]), witnesses=[str(w) for w in c["witnesses"]], nodes=nodes, rels=rels))
    for c in row.get("content") or []:
        if not c or not c.get("shared"):
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        a_idx = len(nodes) - 1
        names = []
        for key in c["shared"]:
            rel, name = _attr_name(key)
            if rel not in ATTRIBUTE_RELS:
                continue
            nodes.append(PathNode(label=ATTRIBUTE_RELS[rel], key=name))
            x = len(nodes) - 1
            rels.append(PathRel(type=rel, start=a_idx, end=x))
            names.append(name)
        nodes.append(rec_node)
        r_idx = len(nodes) - 1
        for x, node in enumerate(nodes):
            if node.label in ATTRIBUTE_RELS.values():
                rel = next(k for k, v in ATTRIBUTE_RELS.items() if v == node.label)
                rels.append(PathRel(type=rel, start=r_idx, end=x))
        who = f"which you {_fmt_rating(c['rating'])}" if user_id is not None else "which you like"
        text = f"shares {_join(names[:4])}{' and more' if len(names) > 4 else ''} with {c['title'] or c['anchor']}, {who}"
        reasons.append(Reason(kind="content", weight=min(1.0, max(0.0, float(c["weight"]))), text=text, anchor_item_id=c["anchor"],
                              anchor_rating=c["rating"], shared=names, nodes=nodes, rels=rels))
    for c in row.get("semantic") or []:
        if not c or c.get("cos") is None or c["cos"] < SEMANTIC_MIN_COSINE:
            continue
        nodes, rels = anchor_head(c["anchor"], c["title"], c["rating"])
        nodes.append(rec_node)
        rels.append(PathRel(type="TEXT_SIMILAR", start=len(nodes) - 2, end=len(nodes) - 1, properties={"cosine": round(float(c["cos"]), 4), "computed": True}))
        reasons.append(Reason(kind="semantic", weight=min(1.0, max(0.0, (float(c["cos"]) - SEMANTIC_BASELINE) / (1.0 - SEMANTIC_BASELINE))),
                              text=f"its description is close to {c['title'] or c['anchor']}'s (cosine {c['cos']:.2f})",
                              anchor_item_id=c["anchor"], anchor_rating=c["rating"], similarity=float(c["cos"]), nodes=nodes, rels=rels))
    deg, n_users = int(row.get("rec_deg") or 0), int(row.get("n_users") or 0)
    if deg > 0:
        share = deg / n_users if n_users else 0.0
        reasons.append(Reason(kind="popularity", weight=min(1.0, share), count=deg,
                              text=f"popular with {deg} user{'' if deg == 1 else 's'}" + (f" ({share:.1%} of all users)" if n_users else ""),
                              nodes=[rec_node, PathNode(label="User", key="*")],
                              rels=[PathRel(type="INTERACTED", start=1, end=0, properties={"count": deg})]))
    reasons.sort(key=lambda r: r.weight, reverse=True)
    reasons = reasons[:max_reasons]
    if reasons:
        sentence = f"{title or item_id}: recommended because " + _join([_clause(r) for r in reasons]) + "."
    else:
        sentence = f"{title or item_id}: recommended by embedding similarity alone (no supporting path found)."
    return Explanation(item_id=item_id, title=title, reasons=reasons, sentence=sentence)


def explain(
    driver: neo4j.Driver,
    item_ids: Sequence[str],
    *,
    dataset: str,
    user_id: str | None = None,
    anchor_item_ids: Sequence[str] | None = None,
    max_reasons: int = 3,
    max_anchors: int = 15,
    like_threshold: float = 4.0,
    n_witnesses: int = 3,
    database: str = "neo4j",
) -> dict[str, Explanation]:
    """Explain why ``item_ids`` fit ``user_id`` (or someone who likes ``anchor_item_ids``) with ONE query.

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
    params: dict[str, Any] = {"dataset": dataset, "item_ids": list(item_ids), "like": like_threshold, "max_anchors": max_anchors,
                              "attr_rels": list(ATTRIBUTE_RELS)}
    if user_id is not None:
        rows = read(driver, Q_EXPLAIN_USER, {**params, "user_id": user_id}, database)
        if not rows:
            chk = read(driver, Q_USER_EXISTS, {"dataset": dataset, "user_id": user_id}, database)
            if not chk:
                raise NotFoundError(f"dataset {dataset!r} is not loaded")
            if not chk[0]["ok"]:
                raise UnknownUserError(f"unknown user {user_id!r} in dataset {dataset!r}")
    elif anchor_item_ids is not None:
        rows = read(driver, Q_EXPLAIN_ITEMS, {**params, "anchor_ids": list(anchor_item_ids)}, database)
    else:
        raise InvalidArgumentError("explain needs a user_id or anchor_item_ids")
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
