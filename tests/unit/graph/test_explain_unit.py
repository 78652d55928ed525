"""Pure parts of the explanation layer: co-like materialisation (against brute-force sets) and the
fast-path rows -> reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graph.co_likes import co_like_pairs
from graph.explain import ATTRIBUTE_RELS, _fast_rows, attr_query, build_reasons


def _random_likes(n_users: int, n_items: int, p: float, seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < p
    users, items = np.nonzero(mask)
    return users.tolist(), items.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("top_n", "min_count"), [(3, 1), (5, 2), (100, 1)])
def test_co_like_pairs_match_brute_force(seed: int, top_n: int, min_count: int) -> None:
    n_users, n_items = 25, 12
    users, items = _random_likes(n_users, n_items, 0.3, seed)
    likers = [{u for u, i in zip(users, items) if i == item} for item in range(n_items)]
    pairs = co_like_pairs(users, items, n_users, n_items, top_n=top_n, min_count=min_count)
    assert len(pairs) == n_items
    for a, partners in enumerate(pairs):
        expected = []
        for b in range(n_items):
            c = len(likers[a] & likers[b])
            if b != a and c >= min_count:
                expected.append((b, c, c / math.sqrt(len(likers[a]) * len(likers[b]))))
        expected.sort(key=lambda t: (-t[2], -t[1], t[0]))
        assert [p[0] for p in partners] == [e[0] for e in expected[:top_n]]
        for (b, c, w), (eb, ec, ew) in zip(partners, expected):
            assert (b, c) == (eb, ec)
            assert w == pytest.approx(min(1.0, ew), rel=1e-6)
            assert 0.0 < w <= 1.0


def test_co_like_pairs_count_duplicate_likes_once() -> None:
    # user 0 liked item 0 twice (two relationships): still one co-liker of (0, 1)
    pairs = co_like_pairs([0, 0, 0, 1, 1], [0, 0, 1, 0, 1], n_users=2, n_items=2, top_n=5, min_count=1)
    assert pairs[0] == [(1, 2, pytest.approx(1.0))]
    assert pairs[1] == [(0, 2, pytest.approx(1.0))]


def test_co_like_pairs_empty_items() -> None:
    pairs = co_like_pairs([0], [1], n_users=1, n_items=3, top_n=5, min_count=1)
    assert pairs == [[], [], []]


def _fast_row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "i9", "title": "Nine", "deg": 12, "n_users": 40,
        "collab": {"anchor": "i1", "title": "One", "co": 5, "weight": 0.5, "rating": 5.0, "witnesses": ["u7", "u3", "u5"]},
        "content": [{"anchor": "i2", "title": "Two", "rating": 4.0, "shared": ["HAS_GENRE:Drama"], "weight": 0.25}],
        "semantic": [{"anchor": "i3", "title": "Three", "rating": 4.5, "cos": 0.8}],
    }
    row.update(over)
    return row


def test_fast_rows_feed_build_reasons() -> None:
    (row,) = _fast_rows([_fast_row()])
    assert row["collab"][0]["witnesses"] == ["u3", "u5", "u7"]
    exp = build_reasons(row, "u1", 4, "materialised")
    assert exp.method == "materialised"
    assert {r.kind for r in exp.reasons} == {"collaborative", "content", "semantic", "popularity"}
    collab = next(r for r in exp.reasons if r.kind == "collaborative")
    assert collab.count == 5 and collab.anchor_item_id == "i1" and collab.witnesses == ["u3", "u5", "u7"]
    assert [n.key for n in collab.nodes] == ["u1", "i1", "u3", "i9"]
    weights = [r.weight for r in exp.reasons]
    assert weights == sorted(weights, reverse=True)


@pytest.mark.parametrize("rating,text", [(5.0, "liked by 5 users who also rated One 5/5 like you"),
                                         (None, "liked by 5 users who also liked One")])
def test_collaborative_text_names_a_rating_only_when_there_is_one(rating: float | None, text: str) -> None:
    """Implicit feedback (check-ins, clicks) has no rating: the sentence must not invent one."""
    collab = {"anchor": "i1", "title": "One", "co": 5, "weight": 0.5, "rating": rating, "witnesses": ["u7"]}
    (row,) = _fast_rows([_fast_row(collab=collab, content=[], semantic=[])])
    exp = build_reasons(row, "u1", 3, "materialised")
    assert next(r for r in exp.reasons if r.kind == "collaborative").text == text


@pytest.mark.parametrize("collab", [None, {"anchor": "i1", "title": "One", "co": 0, "weight": 0.1, "rating": 5.0, "witnesses": []},
                                    {"anchor": "i1", "title": "One", "co": 2, "weight": 0.1, "rating": 5.0, "witnesses": []}])
def test_fast_rows_drop_collaborative_without_count_or_witness(collab: object) -> None:
    (row,) = _fast_rows([_fast_row(collab=collab, content=[], semantic=[])])
    assert row["collab"] == []
    exp = build_reasons(row, "u1", 3, "materialised")
    assert [r.kind for r in exp.reasons] == ["popularity"]


@pytest.mark.parametrize("kind", ["fast", "live"])
@pytest.mark.parametrize("for_user", [True, False])
def test_attr_query_names_only_present_allow_listed_types(kind: str, for_user: bool) -> None:
    q = attr_query(kind, for_user, ("HAS_GENRE", "NOT_ALLOWED"))
    assert "__ATTR_TYPES__" not in q and "`HAS_GENRE`" in q
    assert "NOT_ALLOWED" not in q and "HAS_BRAND" not in q
    empty = attr_query(kind, for_user, ())
    assert "__ATTR_TYPES__" not in empty and "HAS_GENRE" not in empty
    everything = attr_query(kind, for_user, tuple(ATTRIBUTE_RELS))
    assert all(f"`{t}`" in everything for t in ATTRIBUTE_RELS)


@pytest.mark.parametrize("user_id", ["u1", None])
@pytest.mark.parametrize("over", [{}, {"content": [{"anchor": "i2", "title": None, "rating": None, "weight": 1.5,
                                                    "shared": ["HAS_GENRE:Drama", "HAS_TAG:dark", "NOT_ALLOWED:x"]}]},
                                  {"collab": None, "semantic": [{"anchor": "i3", "title": "Three", "rating": 4.5, "cos": 0.2}]},
                                  {"deg": 0, "collab": None, "content": [], "semantic": []}])
def test_explanation_dict_is_the_validated_models_dump(user_id: str | None, over: dict[str, object]) -> None:
    """The serving path writes explanation_dict's output straight into the JSON answer: it must hold
    every field of every model, in the models' order, with the values validation would give."""
    from graph.explain import Explanation, explanation_dict

    (row,) = _fast_rows([_fast_row(**over)])
    raw = explanation_dict(row, user_id, 4, "materialised")
    model = Explanation.model_validate(raw)
    assert model.model_dump() == raw
    assert model.model_dump_json() == Explanation.__pydantic_serializer__.to_json(model).decode()
    import pydantic_core

    assert pydantic_core.to_json(raw) == model.model_dump_json().encode()
    assert build_reasons(row, user_id, 4, "materialised") == model
