"""The serving path's answer (plain explanation dicts serialised once) equals the validated models' JSON."""

from __future__ import annotations

import json

import pytest

from api.routes.users import _json, response_json, response_of
from graph.explain import _fast_rows, build_reasons, explanation_dict
from graph.recommend import RecommendationList, RecommendedItem
from graph.recommend_fusion import ScoreParts


def _recs(with_parts: bool) -> RecommendationList:
    parts = ScoreParts(graph=1.5, content=0.25, popularity=3.0, graph_z=2.0, content_z=0.1, popularity_z=1.2,
                       w_graph=0.6, w_content=0.1, w_popularity=0.3) if with_parts else None
    items = [RecommendedItem(item_id=f"i{n}", title=f"Item {n}" if n % 2 else None, year=1990 + n if n % 3 else None,
                             genres=["Drama"] * (n % 2), score=1.0 / (n + 1), rank=n + 1, score_parts=parts) for n in range(4)]
    return RecommendationList(dataset="ml", model_version="v1", model_tag="t1", user_id="u1", items=items, ranking="fusion",
                              candidates="list", exact=True, history_size=12)


def _row(item_id: str, with_reasons: bool) -> dict[str, object]:
    (row,) = _fast_rows([{
        "id": item_id, "title": f"Title {item_id}", "deg": 7 if with_reasons else 0, "n_users": 40,
        "collab": {"anchor": "a1", "title": "One", "co": 3, "weight": 0.5, "rating": 4.5, "witnesses": ["w2", "w1"]} if with_reasons else None,
        "content": [{"anchor": "a2", "title": "Two", "rating": 5.0, "shared": ["HAS_GENRE:Drama"], "weight": 0.5}] if with_reasons else [],
        "semantic": [{"anchor": "a3", "title": None, "rating": None, "cos": 0.75}] if with_reasons else [],
    }])
    return row


@pytest.mark.parametrize("with_parts", [True, False])
def test_response_json_equals_the_models_json(with_parts: bool) -> None:
    recs = _recs(with_parts)
    rows = {i.item_id: _row(i.item_id, n != 1) for n, i in enumerate(recs.items[:3])}  # i3 has no explanation
    dicts = {k: explanation_dict(r, "u1", 3, "materialised") for k, r in rows.items()}
    models = {k: build_reasons(r, "u1", 3, "materialised") for k, r in rows.items()}
    fast, slow = response_json(recs, dicts).body, _json(response_of(recs, models)).body
    assert fast == slow
    body = json.loads(fast)
    assert [i["item_id"] for i in body["items"]] == ["i0", "i1", "i2", "i3"]
    assert body["items"][3]["explanation"] is None and "model_tag" not in body
