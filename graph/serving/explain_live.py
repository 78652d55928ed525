"""The ``neighbour`` explanation kind of live models: "because you liked X (weight w)".

Each reason is a path that exists in the graph (its weight read from the publication's tables, which
hold the relationships' weights; :func:`verify_neighbour` re-checks one with Cypher) and that the
Browser can show::

    (:User {id})-[:INTERACTED]->(:Item {id: X})-[:NEIGHBOUR {tag, w}]->(:Item {id: recommended})

Its weight is the share of the recommended item's score that ``w`` accounts for. The low-rank and
popularity parts of a live score get a reason each when they carry a noticeable share of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph.explain import Explanation
from graph.recommend import RecommendationList
from graph.serving.records import LiveScoreParts
from graph.serving.live import plan
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES, LiveTables

Q_TITLES = """
MATCH (d:Dataset {name: $dataset})
UNWIND $ids AS iid
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
RETURN i.id AS id, i.title AS title
"""
"""Titles of the anchor items (the history items a reason goes through)."""

Q_VERIFY_NEIGHBOUR = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[:INTERACTED]->(j:Item {dataset: $dataset, gen: d.gen, id: $anchor_id})
MATCH (j)-[n:NEIGHBOUR]->(i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WHERE n.tag = $tag
RETURN n.w AS w
"""
"""Re-check one neighbour reason: the path exists in the active generation with this publication's weight."""

SHARE_MIN = 0.15
"""Low-rank and popularity parts get a reason when they make at least this share of the score."""


def _share(part: float, parts: LiveScoreParts) -> float:
    total = abs(parts.neighbours) + abs(parts.low_rank) + abs(parts.popularity)
    return 0.0 if total <= 0 else max(0.0, min(1.0, part / total))


def strongest_anchors(tables: LiveTables, history: list[str], item_ids: list[str], n: int) -> dict[str, list[tuple[str, float]]]:
    """For each item, the ``n`` history items with the heaviest NEIGHBOUR weight to it (ties by id), from
    the publication's tables (the same weights as the graph's relationships)."""
    hist = [h for h in dict.fromkeys(history) if h in tables.row]
    cols = [tables.row[i] for i in item_ids if i in tables.row]
    if not hist or not cols:
        return {}
    sub = tables.neighbours[[tables.row[h] for h in hist]][:, cols].toarray()
    out: dict[str, list[tuple[str, float]]] = {}
    for c, i in enumerate(i for i in item_ids if i in tables.row):
        nz = np.flatnonzero(sub[:, c] > 0)
        best = sorted(((hist[j], float(sub[j, c])) for j in nz), key=lambda x: (-x[1], x[0]))[:n]
        out[i] = best
    return out


def explain_live(
    store: GraphStore, recs: RecommendationList, history: list[str], *, user_id: str | None = None, max_reasons: int = 3,
    gen: int | None = None,
) -> dict[str, Explanation]:
    """Explanations of a live answer: the strongest neighbour paths from the history, then the other parts."""
    if not recs.items:
        return {}
    if gen is None:
        gen = plan(store, None).gen
    tables = TABLES.get(store, recs.model_tag, gen)
    anchors = strongest_anchors(tables, history, [i.item_id for i in recs.items], max_reasons)
    anchor_ids = sorted({a for v in anchors.values() for a, _ in v})
    titles = {r["id"]: r["title"] for r in store.read(Q_TITLES, {"ids": anchor_ids})} if anchor_ids else {}
    out: dict[str, Explanation] = {}
    for item in recs.items:
        parts = item.score_parts if isinstance(item.score_parts, LiveScoreParts) else None
        reasons: list[dict[str, Any]] = []
        for a, w in anchors.get(item.item_id, []):
            nodes = ([{"label": "User", "key": user_id}] if user_id else []) + [
                {"label": "Item", "key": a, "title": titles.get(a)}, {"label": "Item", "key": item.item_id, "title": item.title}]
            off = 1 if user_id else 0
            rels = ([{"type": "INTERACTED", "start": 0, "end": 1}] if user_id else []) + [
                {"type": "NEIGHBOUR", "start": off, "end": off + 1, "properties": {"w": w, "tag": recs.model_tag}}]
            reasons.append({"kind": "neighbour", "weight": _share(w, parts) if parts else 0.0,
                            "text": f"because you liked {titles.get(a) or a} (weight {w:.3g})",
                            "anchor_item_id": a, "nodes": nodes, "rels": rels})
        if parts is not None:
            low, pop = _share(parts.low_rank, parts), _share(parts.popularity, parts)
            if low >= SHARE_MIN:
                reasons.append({"kind": "collaborative", "weight": low,
                                "text": f"fits the overall taste of your {parts.history_size} items (low-rank graph filter)"})
            if pop >= SHARE_MIN:
                reasons.append({"kind": "popularity", "weight": pop, "text": "popular with many users"})
        reasons = reasons[:max_reasons]
        sentence = "; ".join(r["text"] for r in reasons) if reasons else "recommended by the live graph model"
        out[item.item_id] = Explanation.model_validate({"item_id": item.item_id, "title": item.title, "reasons": reasons,
                                                        "sentence": sentence[:1].upper() + sentence[1:] + ".", "method": "live"})
    return out


def verify_neighbour(store: GraphStore, user_id: str, anchor_id: str, item_id: str, tag: str) -> float | None:
    """The weight of the path user -> anchor -> item under publication ``tag`` (``None``: no such path)."""
    rows = store.read(Q_VERIFY_NEIGHBOUR, {"user_id": user_id, "anchor_id": anchor_id, "item_id": item_id, "tag": tag})
    return float(rows[0]["w"]) if rows else None


__all__ = ["Q_TITLES", "Q_VERIFY_NEIGHBOUR", "explain_live", "strongest_anchors", "verify_neighbour"]
