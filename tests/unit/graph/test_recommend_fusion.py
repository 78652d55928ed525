"""Serving-time score fusion, pure parts: same numbers as the offline scorer, and a sound threshold bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnn.fusion.scores import FusionWeights, ScoreFusion, content_profiles, popularity_scores, standardise
from gnn.fusion.serving import row_stats, serving_fusion, user_score_stats
from graph.recommend_fusion import (
    FusionParams,
    bucket_of,
    bucket_weights,
    fused_score,
    fused_scores,
    score_parts,
    unseen_upper_bound,
    zscore,
)


def _world(seed: int, n_users: int = 12, n_items: int = 40, d: int = 6, t: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n_items, t)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    sizes = rng.integers(0, 9, size=n_users)
    sizes[0] = 0  # one user without training history
    tu = np.repeat(np.arange(n_users), sizes)
    ti = rng.choice(n_items, size=len(tu), p=np.linspace(2, 0.1, n_items) / np.linspace(2, 0.1, n_items).sum())
    return {"ue": rng.normal(size=(n_users, d)).astype(np.float32), "ie": rng.normal(size=(n_items, d)).astype(np.float32),
            "text": text, "tu": tu, "ti": ti}


FUSION = ScoreFusion(bounds=[5], buckets=[FusionWeights(graph=0.5, content=0.3, popularity=0.2),
                                          FusionWeights(graph=0.7, content=0.1, popularity=0.2)])


@pytest.mark.parametrize("history,bounds,expected", [(0, [5], 0), (5, [5], 0), (6, [5], 1), (3, [2, 10], 1), (11, [2, 10], 2), (2, [], 0)])
def test_bucket_of_matches_offline_searchsorted(history: int, bounds: list[int], expected: int) -> None:
    assert bucket_of(history, bounds) == expected
    if bounds:
        assert int(ScoreFusion(bounds=bounds, buckets=[]).bucket_of(np.array([history]))[0]) == expected


def test_bucket_weights_picks_the_triple() -> None:
    flat = [0.5, 0.5, 0.0, 0.8, 0.0, 0.2]
    assert bucket_weights(3, [5], flat) == (0.5, 0.5, 0.0)
    assert bucket_weights(50, [5], flat) == (0.8, 0.0, 0.2)
    with pytest.raises(ValueError):
        bucket_weights(50, [5, 10], flat)


def test_row_stats_floor_and_unbiased_std() -> None:
    mean, std = row_stats(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
    assert mean.tolist() == [2.0, 4.0]
    assert std[0] == pytest.approx(1.0) and std[1] == 1.0  # ddof=1; constant row -> 1 like standardise
    assert zscore(5.0, 4.0, 0.0) == 1.0


@pytest.mark.parametrize("max_cells", [7, 40, 10_000])
def test_user_score_stats_batches_agree(max_cells: int) -> None:
    w = _world(0)
    m, s = user_score_stats(w["ue"], w["ie"], max_cells=max_cells)
    full = w["ue"].astype(np.float64) @ w["ie"].T.astype(np.float64)
    np.testing.assert_allclose(m, full.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, full.std(1, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_fused_scores_equal_offline_standardised_combination(seed: int) -> None:
    """Any candidate subset scored from the stored statistics gets the offline fused score of the full row."""
    w = _world(seed)
    nU, nI = w["ue"].shape[0], w["ie"].shape[0]
    sf = serving_fusion(FUSION, [f"u{j}" for j in range(nU)], [f"i{j}" for j in range(nI)], w["ue"], w["ie"], w["text"], w["tu"], w["ti"])
    # offline, exactly as gnn.fusion.pipeline / experiment score the default method
    hist = [w["ti"][w["tu"] == u] for u in range(nU)]
    prof = content_profiles(hist, w["text"])
    parts = {"graph": torch.from_numpy(w["ue"] @ w["ie"].T), "content": torch.from_numpy(prof @ w["text"].T),
             "popularity": torch.from_numpy(popularity_scores(w["ti"], nI)).unsqueeze(0).repeat(nU, 1)}
    offline = FUSION.combine({k: standardise(v) for k, v in parts.items()}, np.array([len(h) for h in hist])).numpy()
    assert sf.history_sizes.tolist() == [len(h) for h in hist]
    assert sf.popular_ids(3) == [f"i{j}" for j in np.argsort(-popularity_scores(w["ti"], nI), kind="stable")[:3]]
    rng = np.random.default_rng(seed + 10)
    for u in range(nU):
        gm, gs, cm, cs = sf.user_stats[u]
        b = bucket_of(int(sf.history_sizes[u]), sf.bounds)
        p = FusionParams(w_graph=sf.weights[b, 0], w_content=sf.weights[b, 1], w_popularity=sf.weights[b, 2], graph_mean=gm, graph_std=gs,
                         content_mean=cm, content_std=cs, pop_mean=sf.pop_mean, pop_std=sf.pop_std, fused=True)
        cand = rng.choice(nI, size=7, replace=False)
        g = w["ue"][u] @ w["ie"][cand].T
        c = sf.profiles[u] @ w["text"][cand].T
        online = fused_scores(g, c, sf.popularity[cand], p)
        np.testing.assert_allclose(online, offline[u, cand], rtol=1e-4, atol=1e-4)
        one = fused_score(score_parts(float(g[0]), None if not np.any(sf.profiles[u]) else float(c[0]), float(sf.popularity[cand[0]]), p))
        assert one == pytest.approx(float(offline[u, cand[0]]), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_threshold_bound_dominates_every_unretrieved_item(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    g, c, pop = rng.normal(size=n), rng.uniform(-0.2, 1.0, size=n), np.log1p(rng.poisson(3, size=n)).astype(float)
    p = FusionParams(w_graph=0.6, w_content=0.3, w_popularity=0.1, graph_mean=g.mean(), graph_std=g.std(ddof=1), content_mean=c.mean(),
                     content_std=c.std(ddof=1), pop_mean=pop.mean(), pop_std=pop.std(ddof=1), fused=True)
    top = 15
    src = [set(np.argsort(-x, kind="stable")[:top]) for x in (g, c, pop)]
    seen = set().union(*src)
    bound = unseen_upper_bound(p, min(g[list(src[0])]), min(c[list(src[1])]), min(pop[list(src[2])]), True, True)
    scores = fused_scores(g, c, pop, p)
    unseen = [j for j in range(n) if j not in seen]
    assert max(scores[unseen]) <= bound + 1e-12
    # when the k-th retrieved score reaches the bound, the retrieved top k is the global top k
    kth = sorted(scores[list(seen)], reverse=True)[4]
    if kth >= bound:
        assert sorted(np.argsort(-scores)[:5]) == sorted(sorted(seen, key=lambda j: -scores[j])[:5])


def test_threshold_bound_edge_cases() -> None:
    p = FusionParams(w_graph=0.5, w_content=0.5, w_popularity=0.0, content_mean=0.0, content_std=1.0, fused=True)
    # no profile: the content part is 0 for every item
    assert unseen_upper_bound(p, 1.0, None, None, False, False) == pytest.approx(0.5)
    assert unseen_upper_bound(p, None, None, None, False, False) == float("inf")
    assert unseen_upper_bound(p.model_copy(update={"w_popularity": 0.1}), 1.0, None, None, False, False) == float("inf")
    # a plain model (weights 1/0/0, mean 0, std 1): the bound is the lowest retrieved dot product
    assert unseen_upper_bound(FusionParams(), -0.25, None, None, False, False) == -0.25


def test_score_parts_without_fusion_data_is_the_dot_product() -> None:
    parts = score_parts(2.5, None, None, FusionParams())
    assert fused_score(parts) == 2.5 and parts.content_z == 0.0 and parts.popularity_z == 0.0
