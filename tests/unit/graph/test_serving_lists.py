"""graph.serving_lists: the lists are the served ranking's top N unseen items (dot product or fused)."""

from __future__ import annotations

import numpy as np
import pytest

from graph.recommend_fusion import FusionParams, fused_scores
from graph.serving_lists import compute_serving_lists


class Tables:
    """A ServingFusion-like bundle (fusion over the first 5 users and the first 30 items only)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.user_ids = [f"u{j}" for j in range(5)]
        self.item_ids = [f"i{j}" for j in range(30)]
        self.bounds = [3]
        self.weights = np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2]])
        self.history_sizes = np.array([1, 2, 5, 8, 4])
        prof = rng.normal(size=(5, 6))
        prof[1] = 0.0  # empty history: no profile, content part 0
        self.profiles = prof / np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        self.user_stats = np.column_stack([rng.normal(size=5), rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.uniform(0.5, 2, 5)])
        self.popularity = rng.uniform(0, 4, 30)
        self.pop_mean = float(self.popularity.mean())
        self.pop_std = float(self.popularity.std(ddof=1))


@pytest.fixture
def world() -> dict:
    rng = np.random.default_rng(7)
    users = [f"u{j}" for j in range(7)]  # u5, u6: no fusion statistics (dot product, as online)
    items = [f"i{j}" for j in range(40)]  # i30..i39: cold items (no popularity), i35..: no text
    text_ids = items[:35]
    text = rng.normal(size=(35, 6))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    seen = {u: [items[j] for j in rng.choice(40, size=8, replace=False)] for u in users}
    return {"users": users, "U": rng.normal(size=(7, 4)), "items": items, "I": rng.normal(size=(40, 4)), "seen": seen,
            "text_ids": text_ids, "text": text, "f": Tables(rng)}


def _brute(w: dict, fused: bool, size: int) -> dict[str, list[str]]:
    f = w["f"]
    text = {t: v for t, v in zip(w["text_ids"], w["text"])}
    pop = dict(zip(f.item_ids, f.popularity))
    out = {}
    for n, u in enumerate(w["users"]):
        g = w["U"][n] @ w["I"].T
        if fused and u in f.user_ids:
            j = f.user_ids.index(u)
            b = int(sum(x < f.history_sizes[j] for x in f.bounds))
            wg, wc, wp = f.weights[b]
            m = f.user_stats[j]
            p = FusionParams(w_graph=wg, w_content=wc, w_popularity=wp, graph_mean=m[0], graph_std=m[1], content_mean=m[2], content_std=m[3],
                             pop_mean=f.pop_mean, pop_std=f.pop_std, fused=True)
            c = np.array([float(f.profiles[j] @ text[i]) if i in text else 0.0 for i in w["items"]])
            s = fused_scores(g, c, np.array([pop.get(i, 0.0) for i in w["items"]]), p)
        else:
            s = g
        ranked = sorted((i for i in w["items"] if i not in set(w["seen"][u])), key=lambda i: (-s[w["items"].index(i)], i))
        out[u] = ranked[:size]
    return out


@pytest.mark.parametrize("fused", [False, True], ids=["dot", "fused"])
@pytest.mark.parametrize("size", [1, 5, 32, 100])
def test_lists_are_the_top_unseen_items_of_the_served_score(world: dict, fused: bool, size: int) -> None:
    kw = {"fusion": world["f"], "text_ids": world["text_ids"], "text_vectors": world["text"]} if fused else {}
    got = compute_serving_lists(world["users"], world["U"], world["items"], world["I"], world["seen"], size, max_cells=80, **kw)
    want = _brute(world, fused, size)
    assert got == want
    assert all(len(v) == min(size, 32) for v in got.values())  # 40 items, 8 seen each
    assert all(not set(v) & set(world["seen"][u]) for u, v in got.items())


def test_fusion_needs_text_vectors_and_size_zero_writes_nothing(world: dict) -> None:
    with pytest.raises(ValueError):
        compute_serving_lists(world["users"], world["U"], world["items"], world["I"], world["seen"], 5, fusion=world["f"])
    assert compute_serving_lists(world["users"], world["U"], world["items"], world["I"], world["seen"], 0) == {}


def test_list_fetch_reads_2k_entries_unless_attribute_filters_need_more() -> None:
    from graph.recommend import Filters, list_fetch

    assert list_fetch(10, Filters()) == 20
    assert list_fetch(10, Filters(exclude_ids=["a", "b", "c"])) == 23
    assert list_fetch(10, Filters(genres=["Crime"])) == 40
    assert list_fetch(2, Filters(year_min=1990), oversample=4) == 10
