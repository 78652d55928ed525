"""The paired bootstrap interval that ``graphrec bench live`` reports next to the gap ratio."""

from __future__ import annotations

import numpy as np

from benchmarks.live import _gap, _gap_interval


def _results(static: np.ndarray, live: np.ndarray, refit: np.ndarray) -> dict[str, list[tuple[float, float]]]:
    return {name: [(float(x), float(x)) for x in v] for name, v in (("static", static), ("live", live), ("refit", refit))}


def test_interval_contains_the_point_estimate_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1600):
        static = rng.uniform(0.0, 0.3, n)
        refit = static + rng.normal(0.02, 0.05, n)
        live = static + 0.8 * (refit - static) + rng.normal(0.0, 0.02, n)
        res = _results(static, live, refit)
        means = {k: {m: float(np.mean([x[j] for x in v])) for j, m in enumerate(("recall@20", "ndcg@20"))} for k, v in res.items()}
        point = _gap(means)["recall@20"]
        lo, hi = _gap_interval(res, seed=0, n_resamples=500)["recall@20"]
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # 16 x the users: about a quarter of the width


def test_live_equal_to_refit_for_every_user_gives_a_point_interval() -> None:
    static = np.linspace(0.0, 0.2, 50)
    refit = static + np.linspace(0.01, 0.05, 50)
    lo, hi = _gap_interval(_results(static, refit.copy(), refit), n_resamples=200)["ndcg@20"]
    assert np.isclose(lo, 1.0) and np.isclose(hi, 1.0)


def test_no_gap_gives_no_interval() -> None:
    same = np.full(10, 0.1)
    assert _gap_interval(_results(same, same, same), n_resamples=50) == {"recall@20": None, "ndcg@20": None}
