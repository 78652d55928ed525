"""``graphrec bench live``: does feedback written through the API reach the ranking at once?

Protocol (MovieLens, bundled ml-latest-small, through the real API and Neo4j):

1. Split every user's interactions by time: oldest 70 % train, next 10 % validation, newest 20 % test
   (``per_user_temporal``). A dataset ``--dataset`` (default ``ml-live-bench``) is loaded with the
   training part only.
2. The default live model is fitted on the training part (filter and fusion weights chosen on the
   validation part, as ``graphrec fit`` does) and published; a second form is fitted on train +
   validation with the same settings (the *refit*).
3. For each evaluated user (with validation and test interactions):
   * **static**: ``GET /v1/users/{id}/recommendations?k=20`` with the validation items excluded and
     not yet in the graph: what a model that ignores feedback serves;
   * the validation interactions are sent as feedback, ``POST /v1/interactions`` one by one;
   * **live**: the same ``GET`` right after: the model scores the user from the history in the graph.
4. The refit form is published and every user is read again (**refit**).
5. Recall@20 / NDCG@20 on each user's test items, for the three variants; the share of the
   static-to-refit gap that live closes, with a 95 % paired bootstrap interval over the users.

With ``--offline`` steps 3-4 run in process instead: the same two forms score every evaluated user
from the same histories (train for static, train + validation for live and refit) with
:meth:`gnn.live.LiveForm.scores`, the reference that serving equals (an integration test checks
it). No Neo4j is needed and every user fits in a minute, so the ratio is not at the mercy of a
small sample.

Numbers go to stdout and ``--out`` (JSON). Requests go only to 127.0.0.1 and the run is bounded.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

SPLIT = {"test_fraction": 0.2, "val_fraction": 0.1}


def _metrics(top: list[str], relevant: set[str], k: int = 20) -> tuple[float, float]:
    hits = [1.0 if i in relevant else 0.0 for i in top[:k]]
    recall = sum(hits) / len(relevant) if relevant else 0.0
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return recall, dcg / idcg if idcg else 0.0


def _gap(means: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Share of the static-to-refit gap that live closes, per metric (``None`` without a gap)."""
    return {m: (means["live"][m] - means["static"][m]) / (means["refit"][m] - means["static"][m])
            if means["refit"][m] != means["static"][m] else None for m in ("recall@20", "ndcg@20")}


def _gap_interval(results: dict[str, list[tuple[float, float]]], seed: int = 0, n_resamples: int = 2000) -> dict[str, list[float] | None]:
    """95 % paired bootstrap interval of the share of the gap that live closes, per metric.

    Users are resampled with replacement (the same users for the three variants, ``scipy.stats.bootstrap``
    with ``paired=True``, percentile method), so the interval says how much the ratio depends on which
    users happen to be evaluated. ``None`` when a metric has no gap or too few users.
    """
    from scipy import stats

    out: dict[str, list[float] | None] = {}
    for j, metric in enumerate(("recall@20", "ndcg@20")):
        s, l, r = (np.array([x[j] for x in results[v]], dtype=np.float64) for v in ("static", "live", "refit"))
        if len(s) < 2 or r.mean() == s.mean():
            out[metric] = None
            continue

        def ratio(s_: np.ndarray, l_: np.ndarray, r_: np.ndarray, axis: int = -1) -> np.ndarray:
            gap = r_.mean(axis=axis) - s_.mean(axis=axis)
            return (l_.mean(axis=axis) - s_.mean(axis=axis)) / np.where(gap == 0, np.nan, gap)

        res = stats.bootstrap((s, l, r), ratio, paired=True, vectorized=True, n_resamples=n_resamples,
                              method="percentile", random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval
        out[metric] = [float(lo), float(hi)]
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _offline_variants(form_train: Any, form_refit: Any, data: Any, evaluated_idx: list[int]) -> dict[str, list[tuple[float, float]]]:
    """Static / live / refit metrics of ``evaluated_idx`` users scored in process (see the module docstring)."""
    import scipy.sparse as sp

    def rows(parts: tuple[str, ...]) -> sp.csr_matrix:
        u = np.concatenate([data.part(p).users.numpy() for p in parts])
        i = np.concatenate([data.part(p).items.numpy() for p in parts])
        m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(data.num_users, data.num_items))
        m.data[:] = 1.0
        return m[evaluated_idx]

    train, seen, test = rows(("train",)), rows(("train", "val")), rows(("test",))
    out: dict[str, list[tuple[float, float]]] = {}
    for name, form, hist in (("static", form_train, train), ("live", form_train, seen), ("refit", form_refit, seen)):
        scores = form.scores(hist)
        scores[seen.nonzero()] = -np.inf  # seen items (validation ones included) are never recommended
        top = np.argsort(-scores, axis=1, kind="stable")[:, :20]
        out[name] = [_metrics([str(j) for j in top[r]], {str(j) for j in test[r].indices}) for r in range(len(evaluated_idx))]
    return out


def run_live_bench(dataset: str, users: int | None, seed: int, workdir: Path, select_budget_s: float, text: bool,
                   offline: bool = False) -> dict[str, Any]:
    """The whole protocol (see the module docstring); returns the record."""
    import dataclasses

    import httpx

    from api.cli.background_api import background_api
    from api.cli.common import connection_info, open_graph
    from api.cli.live_cmd import publish_live_checkpoint
    from gnn.checkpoint import new_version
    from gnn.data import InteractionData, snapshot_from_frames
    from gnn.fusion.live import FusionGrid, fit_live_default
    from gnn.live_checkpoint import LIVE_MODEL_TYPE, save_live_checkpoint
    from gnn.live_pipeline import LiveFitConfig, choose_filter, filter_fitter, item_text_vectors
    from graph.load import LoadOptions, load_frames
    from graphrec.settings import get_settings
    from graphrec.snapshot import SplitSpec
    from loaders.movielens import read_movielens

    settings = get_settings()
    t0 = time.perf_counter()
    frames = dataclasses.replace(read_movielens(), name=dataset)
    snap = snapshot_from_frames(frames, SplitSpec(name="per_user_temporal", params=SPLIT), seed=seed)
    data = InteractionData.from_snapshot(snap)
    inter = snap.interactions
    uid, iid = snap.users["id"].astype(str).to_numpy(), snap.items["id"].astype(str).to_numpy()
    by_part = {p: inter[inter["split"] == p] for p in ("train", "val", "test")}
    train_keys = set(zip(by_part["train"]["user_idx"], by_part["train"]["item_idx"]))
    mask = [(u, i) in train_keys for u, i in zip(frames.interactions["user_id"].map({v: k for k, v in enumerate(uid)}),
                                                  frames.interactions["item_id"].map({v: k for k, v in enumerate(iid)}))]
    train_frames = dataclasses.replace(frames, interactions=frames.interactions[np.array(mask)].reset_index(drop=True))

    # fit on train (the served model) and on train + val (the refit), settings chosen on validation
    cfg = LiveFitConfig(select_budget_s=select_budget_s, use_text=text)
    fc, selection = choose_filter(data, cfg)
    vectors, identity = item_text_vectors(snap, settings.home / "text-cache") if text else (None, None)
    fit = filter_fitter(fc)
    form_train, rep_train = fit_live_default(data, fit, vectors, grid=FusionGrid(seed=seed), evaluate_test=False, serve_on=("train",))
    form_refit, _ = fit_live_default(data, fit, vectors, grid=FusionGrid(seed=seed), evaluate_test=False, serve_on=("train", "val"))
    t_fit = time.perf_counter()
    ids = list(data.items.ids)
    stamp = new_version(LIVE_MODEL_TYPE)  # the two versions differ, so answers tell which one served them
    ck_train = save_live_checkpoint(workdir / "live-train", form_train, ids, dataset=dataset, snapshot_hash=data.snapshot_hash,
                                    extra={"served_on": ["train"], "filter": fc.model_dump()}, version=f"{stamp}-train")
    ck_refit = save_live_checkpoint(workdir / "live-refit", form_refit, ids, dataset=dataset, snapshot_hash=data.snapshot_hash,
                                    extra={"served_on": ["train", "val"], "filter": fc.model_dump()}, version=f"{stamp}-refit")

    val: dict[str, list[tuple[str, float | None, int]]] = {}
    for row in by_part["val"].itertuples():
        r = None if np.isnan(row.rating) else float(row.rating)
        val.setdefault(uid[row.user_idx], []).append((iid[row.item_idx], r, int(row.timestamp)))
    test: dict[str, set[str]] = {}
    for row in by_part["test"].itertuples():
        test.setdefault(uid[row.user_idx], set()).add(iid[row.item_idx])
    evaluated = sorted(u for u in test if u in val)
    if users is not None and users < len(evaluated):
        rng = np.random.default_rng(seed)
        evaluated = sorted(rng.choice(evaluated, size=users, replace=False).tolist())

    if offline:
        index = {u: k for k, u in enumerate(uid)}
        t_scored = time.perf_counter()
        results = _offline_variants(form_train, form_refit, data, [index[u] for u in evaluated])
        means = {k: {"recall@20": float(np.mean([r for r, _ in v])), "ndcg@20": float(np.mean([n for _, n in v]))} for k, v in results.items()}
        return {
            "benchmark": "live", "mode": "offline (the served forms scored in process from the same histories)", "dataset": dataset,
            "split": {"name": "per_user_temporal", **SPLIT, "seed": seed}, "users": len(evaluated), "feedback_writes": 0, "errors": 0,
            "variants": means, "gap_closed_by_live": _gap(means), "gap_closed_ci95": _gap_interval(results, seed), "filter": fc.model_dump(), "filter_selection": selection,
            "fusion": rep_train.weights.model_dump(), "text_encoder": identity, "latency_ms": None,
            "seconds": {"fit": round(t_fit - t0, 1), "score": round(time.perf_counter() - t_scored, 1)},
        }

    info = connection_info(settings)
    with open_graph(settings) as driver:
        load_frames(driver, train_frames, LoadOptions(mode="replace", database=info.database, progress=False, carry_feedback=False))
        publish_live_checkpoint(driver, ck_train, dataset, database=info.database, settings=settings, text_vectors=False)
    t_load = time.perf_counter()

    env = {**os.environ, "GRAPHREC_DATASET": dataset}
    results: dict[str, list[tuple[float, float]]] = {"static": [], "live": [], "refit": []}
    post_ms: list[float] = []
    get_ms: list[float] = []
    errors = 0
    port = _free_port()
    with background_api("127.0.0.1", port, env=env, quiet=True) as api, httpx.Client(base_url=api.base_url, timeout=60.0) as client:
        def top20(user: str, exclude: list[str] | None = None) -> list[str]:
            nonlocal errors
            t = time.perf_counter()
            r = client.get(f"/v1/users/{user}/recommendations", params={"k": 20, "exclude": exclude or []})
            get_ms.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors += 1
                return []
            return [it["item_id"] for it in r.json()["items"]]

        for user in evaluated:
            results["static"].append(_metrics(top20(user, [i for i, _, _ in val[user]]), test[user]))
            for item, rating, ts in val[user]:
                t = time.perf_counter()
                r = client.post("/v1/interactions", json={"user_id": user, "item_id": item, "rating": rating, "ts": ts})
                post_ms.append((time.perf_counter() - t) * 1000)
                errors += r.status_code >= 300
            results["live"].append(_metrics(top20(user), test[user]))
        with open_graph(settings) as driver:
            refit_version = publish_live_checkpoint(driver, ck_refit, dataset, database=info.database, settings=settings,
                                                    text_vectors=False).model.version
        # the API reads a new publication's tables in the background and answers with the one it holds
        # meanwhile: count the refit only once it answers
        deadline = time.monotonic() + 300
        while client.get(f"/v1/users/{evaluated[0]}/recommendations", params={"k": 1}).json().get("model_version") != refit_version:
            if time.monotonic() > deadline:
                raise SystemExit("the API did not serve the refit model within 300 s")
            time.sleep(0.5)
        for user in evaluated:
            results["refit"].append(_metrics(top20(user), test[user]))
    means = {k: {"recall@20": float(np.mean([r for r, _ in v])), "ndcg@20": float(np.mean([n for _, n in v]))} for k, v in results.items()}
    gap = _gap(means)
    return {
        "benchmark": "live", "mode": "api (through the real API and Neo4j)", "dataset": dataset, "split": {"name": "per_user_temporal", **SPLIT, "seed": seed},
        "users": len(evaluated), "feedback_writes": len(post_ms), "errors": errors,
        "variants": means, "gap_closed_by_live": gap, "gap_closed_ci95": _gap_interval(results, seed),
        "filter": fc.model_dump(), "filter_selection": selection, "fusion": rep_train.weights.model_dump(), "text_encoder": identity,
        "latency_ms": {"post_p50": float(np.percentile(post_ms, 50)), "post_p99": float(np.percentile(post_ms, 99)),
                       "get_p50": float(np.percentile(get_ms, 50)), "get_p99": float(np.percentile(get_ms, 99))},
        "seconds": {"fit": round(t_fit - t0, 1), "load_publish": round(t_load - t_fit, 1), "requests": round(time.perf_counter() - t_load, 1)},
    }


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench live``."""

    @bench_app.command("live")
    def bench_live(
        dataset: str = typer.Option("ml-live-bench", "--dataset", help="Dataset name the benchmark loads (replaced)."),
        users: int | None = typer.Option(None, "--users", min=1, help="Evaluate a seeded sample of this many users (default: all)."),
        seed: int = typer.Option(0, "--seed"),
        select_budget_s: float = typer.Option(60.0, "--select-budget", min=1.0, help="Seconds for choosing the filter on validation."),
        text: bool = typer.Option(True, "--text/--no-text", help="Fuse BERT text neighbours."),
        offline: bool = typer.Option(False, "--offline", help="Score the served forms in process instead of through the API "
                                                                "and Neo4j (all users in a minute; no server needed)."),
        out: Path = typer.Option(Path("bench_live.json"), "--out", help="JSON record."),
    ) -> None:
        """Static vs live vs refit Recall@20 / NDCG@20 on MovieLens through the real API and Neo4j."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="graphrec-bench-live-") as tmp:
            record = run_live_bench(dataset, users, seed, Path(tmp), select_budget_s, text, offline)
        out.write_text(json.dumps(record, indent=2))
        v = record["variants"]
        typer.echo(f"{record['mode']}: {record['users']} users, {record['feedback_writes']} feedback writes, {record['errors']} non-2xx")
        for name in ("static", "live", "refit"):
            typer.echo(f"  {name:6s} Recall@20 {v[name]['recall@20']:.4f}  NDCG@20 {v[name]['ndcg@20']:.4f}")
        g = record["gap_closed_by_live"]
        typer.echo("  live closes " + ", ".join(f"{m}: {x:.0%}" if x is not None else f"{m}: n/a" for m, x in g.items())
                   + " of the static-to-refit gap")
        ci = record.get("gap_closed_ci95") or {}
        typer.echo("  95% paired bootstrap interval over users: " + ", ".join(
            f"{m}: {x[0]:.0%} to {x[1]:.0%}" if x is not None else f"{m}: n/a" for m, x in ci.items()))
        lat = record["latency_ms"] or {}
        if lat:
            typer.echo(f"  POST p50 {lat['post_p50']:.1f} ms p99 {lat['post_p99']:.1f} ms; GET p50 {lat['get_p50']:.1f} ms p99 {lat['get_p99']:.1f} ms")
        typer.echo(f"wrote {out}")
