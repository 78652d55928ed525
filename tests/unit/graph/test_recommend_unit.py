"""Unit tests of the query layer's pure parts: the MIPS-to-cosine reduction, MMR, filters, reason building."""

from __future__ import annotations

import numpy as np
import pytest

from graph.embeddings import augment_items, augment_users, check_index, check_prop, make_tag, score_to_dot
from graph.explain import build_reasons
from graph.recommend import Filters, mmr, query_vector_from_items, validate_filters
from graphrec.errors import InvalidArgumentError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mips_reduction_cosine_ranking_equals_dot_ranking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(200, 16)) * rng.uniform(0.1, 3.0, size=(200, 1))
    users = rng.normal(size=(5, 16))
    aug, m = augment_items(items)
    assert aug.shape == (200, 17)
    assert np.allclose(np.linalg.norm(aug, axis=1), m)
    q = augment_users(users)
    assert np.all(q[:, -1] == 0)
    for u, qu in zip(users, q):
        dots = items @ u
        cos = aug @ qu / (np.linalg.norm(aug, axis=1) * np.linalg.norm(qu))
        assert list(np.argsort(-dots)) == list(np.argsort(-cos))
        score = (1 + cos) / 2  # Neo4j's cosine score
        recovered = np.array([score_to_dot(s, np.linalg.norm(u), m) for s in score])
        assert np.allclose(recovered, dots)


def test_names_are_allow_listed() -> None:
    tag = make_tag("movie lens!", "v1.2-3")
    assert check_prop(f"emb_{tag}") == f"emb_{tag}"
    assert check_index(f"graphrec_item_{tag}")
    for bad in ("emb_x`) DETACH DELETE n //", "name", "emb_"):
        with pytest.raises(InvalidArgumentError):
            check_prop(bad)
    with pytest.raises(InvalidArgumentError):
        check_index("other_index")


def test_mmr_zero_diversity_is_relevance_order_and_high_diversity_spreads() -> None:
    rel = np.array([1.0, 0.99, 0.98, 0.5])
    vecs = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1]], dtype=float)
    assert mmr(rel, vecs, 4, 0.0) == [0, 1, 2, 3]
    picked = mmr(rel, vecs, 2, 0.7)
    assert picked[0] == 0 and picked[1] == 3


def test_filters_validation() -> None:
    assert validate_filters(None) == Filters()
    assert validate_filters({"genres": []}).genres is None
    with pytest.raises(InvalidArgumentError) as e:
        validate_filters({"year_min": 2000, "year_max": 1990})
    assert e.value.errors
    with pytest.raises(InvalidArgumentError):
        validate_filters({"colour": "red"})


def test_query_vector_from_items_drops_augmentation() -> None:
    v = query_vector_from_items([[1.0, 3.0, 9.0], [3.0, 5.0, 7.0]])
    assert v == [2.0, 4.0, 0.0]


def test_build_reasons_orders_by_weight_and_builds_paths() -> None:
    row = {
        "id": "10", "title": "Heat 2", "rec_deg": 50, "n_users": 100,
        "collab": [{"anchor": "6", "title": "Heat", "rating": 5.0, "co": 37, "witnesses": ["a", "b"], "weight": 0.4}],
        "content": [{"anchor": "6", "title": "Heat", "rating": 5.0, "shared": ["HAS_GENRE:Crime", "HAS_GENRE:Thriller"], "weight": 0.8}],
        "semantic": [{"anchor": "7", "title": "Ronin", "rating": 4.5, "cos": 0.1}],
    }
    exp = build_reasons(row, "u1", 3)
    kinds = [r.kind for r in exp.reasons]
    assert kinds == ["content", "popularity", "collaborative"]  # semantic below threshold is dropped
    content = exp.reasons[0]
    assert content.shared == ["Crime", "Thriller"]
    assert "shares Crime and Thriller with Heat, which you rated 5/5" in content.text
    labels = [n.label for n in content.nodes]
    assert labels[:2] == ["User", "Item"] and labels.count("Genre") == 2 and labels[-1] == "Item"
    for rel in content.rels:
        assert 0 <= rel.start < len(content.nodes) and 0 <= rel.end < len(content.nodes)
    collab = exp.reasons[2]
    assert collab.count == 37 and "liked by 37 users" in collab.text
    assert exp.sentence.startswith("Heat 2: recommended because it shares Crime and Thriller")
    assert build_reasons(row, "u1", 1).reasons[0].kind == "content"


def test_build_reasons_without_paths_says_so() -> None:
    exp = build_reasons({"id": "1", "title": None, "rec_deg": 0, "n_users": 10, "collab": [], "content": [], "semantic": []}, "u", 3)
    assert exp.reasons == [] and "no supporting path" in exp.sentence


def test_assemble_rows_intersects_liker_sets() -> None:
    from graph.explain import assemble_rows

    anchors = [
        {"id": "a1", "title": "A1", "rating": 5.0, "likers": ["x", "y", "z"], "attrs": ["HAS_GENRE:Crime"]},
        {"id": "a2", "title": "A2", "rating": 4.0, "likers": ["y"], "attrs": ["HAS_GENRE:Crime", "HAS_GENRE:Drama"]},
    ]
    recs = [{"id": "r", "title": "R", "deg": 7, "likers": ["y", "z", "w"], "attrs": ["HAS_GENRE:Crime", "HAS_GENRE:Drama"],
             "sims": [0.9, 0.6]}]
    (row,) = assemble_rows(anchors, recs, n_users=10)
    c = row["collab"][0]
    assert c["anchor"] == "a1" and c["co"] == 2 and c["witnesses"] == ["y", "z"]
    assert c["weight"] == pytest.approx(2 / 3)  # 2 / sqrt(3 * 3) beats 1 / sqrt(1 * 3)
    assert row["content"][0]["anchor"] == "a2" and row["content"][0]["weight"] == 1.0
    assert row["semantic"][0]["anchor"] == "a1" and row["semantic"][0]["cos"] == pytest.approx(0.8)
    assert row["rec_deg"] == 7 and row["n_users"] == 10
