"""The ``neighbour`` explanation kind of live models: "because you liked X (weight w)".

Each reason is a path that exists in the graph and that the Browser can show::

    (:User {id})-[:INTERACTED]->(:Item {id: X})-[:NEIGHBOUR {tag, w}]->(:Item {id: recommended})

Its weight is the share of the recommended item's score that ``w`` accounts for. The low-rank and
popularity parts of a live score get a reason each when they carry a noticeable share of it.
"""

from __future__ import annotations

from typing import Any

from graph.explain import Explanation
from graph.recommend import RecommendationList
from graph.serving.records import LiveScoreParts
from graph.serving.store import GraphStore

Q_BECAUSE = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset}) WHERE m.tag = $tag
UNWIND $item_ids AS iid
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
CALL (m, i) {
  MATCH (j:Item)-[n:NEIGHBOUR]->(i)
  WHERE n.tag = m.tag AND j.id IN $history
  WITH j, n ORDER BY n.w DESC, j.id LIMIT $reasons
  RETURN collect({id: j.id, title: j.title, w: n.w}) AS because
}
RETURN i.id AS id, because
"""

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


def explain_live(
    store: GraphStore, recs: RecommendationList, history: list[str], *, user_id: str | None = None, max_reasons: int = 3,
) -> dict[str, Explanation]:
    """Explanations of a live answer: the strongest neighbour paths from the history, then the other parts."""
    if not recs.items:
        return {}
    rows = store.read(Q_BECAUSE, {"tag": recs.model_tag, "item_ids": [i.item_id for i in recs.items], "history": history,
                                  "reasons": max_reasons})
    because = {r["id"]: r["because"] for r in rows}
    out: dict[str, Explanation] = {}
    for item in recs.items:
        parts = item.score_parts if isinstance(item.score_parts, LiveScoreParts) else None
        reasons: list[dict[str, Any]] = []
        for b in because.get(item.item_id, []):
            nodes = ([{"label": "User", "key": user_id}] if user_id else []) + [
                {"label": "Item", "key": b["id"], "title": b["title"]}, {"label": "Item", "key": item.item_id, "title": item.title}]
            off = 1 if user_id else 0
            rels = ([{"type": "INTERACTED", "start": 0, "end": 1}] if user_id else []) + [
                {"type": "NEIGHBOUR", "start": off, "end": off + 1, "properties": {"w": b["w"], "tag": recs.model_tag}}]
            reasons.append({"kind": "neighbour", "weight": _share(float(b["w"]), parts) if parts else 0.0,
                            "text": f"because you liked {b['title'] or b['id']} (weight {float(b['w']):.3g})",
                            "anchor_item_id": b["id"], "nodes": nodes, "rels": rels})
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


__all__ = ["Q_BECAUSE", "Q_VERIFY_NEIGHBOUR", "explain_live", "verify_neighbour"]
