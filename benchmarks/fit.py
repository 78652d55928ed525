"""``graphrec bench fit``: the default live model (``graphrec fit``) on a public split, honestly evaluated.

Protocol, the same command for every dataset:

1. Read the split: a LightGCN-format folder (``train.txt`` / ``test.txt``, e.g. Gowalla) with
   ``--path``, or the bundled MovieLens (per-user temporal 70 / 10 / 20).
2. Carve a validation part out of the training part: 10 % of each user's training interactions,
   seeded (the ``fixed`` split's ``val_fraction``, as ``graphrec train --lightgcn`` does; the bundled
   MovieLens split has its own).
3. Choose the graph filter and its settings (:mod:`gnn.filters.selection`, within ``--select-budget``)
   and the fusion weights (popularity, and text neighbours when the items have text) on that
   validation part.
4. Refit on train + validation with the chosen settings and evaluate on the test part: Recall@20 /
   NDCG@20 (full ranking, training items masked). This is the number to quote.
5. Also reported, and labelled as such: the literature's protocol, where the fusion weights are
   picked on the test curve (the best test NDCG@20 over the same grid).

With ``--lightgcn CKPT`` a LightGCN trained on the same training part (``graphrec train``, which
carves the same validation part for its early stopping) joins the fusion
(:mod:`gnn.fusion.lightgcn_part`); a checkpoint trained on any other interactions is refused. It is
not retrained on train + validation for step 4.

Writes ``bench_fit.json`` (``best`` holds the validation-protocol ``recall@20`` / ``ndcg@20``) in ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer


def run_fit_bench(dataset: str, path: Path | None, select_budget_s: float, text: bool, seed: int,
                  lightgcn: Path | None = None, correction_rank: int | None = None) -> dict[str, Any]:
    """The protocol of the module docstring; returns the record."""
    import os
    import platform

    from gnn.data import InteractionData, snapshot_from_frames
    from gnn.fusion.live import FusionGrid, fit_live_default
    from gnn.live_pipeline import LiveFitConfig, choose_filter, filter_fitter, item_text_vectors, with_validation
    from graphrec.settings import get_settings
    from graphrec.snapshot import SplitSpec

    t0 = time.perf_counter()
    if path is not None:
        from loaders.lightgcn import read_lightgcn

        # the validation part carved from train.txt by the split, as `graphrec train --lightgcn` carves it
        snap = snapshot_from_frames(read_lightgcn(path, name=dataset), SplitSpec(name="fixed", params={"val_fraction": 0.1}), seed=seed)
    else:
        from loaders.movielens import read_movielens

        snap = snapshot_from_frames(read_movielens(name=dataset), SplitSpec(name="per_user_temporal",
                                                                           params={"test_fraction": 0.2, "val_fraction": 0.1}), seed=seed)
    cfg = LiveFitConfig(select_budget_s=select_budget_s, use_text=text, seed=seed,
                        **({"correction_rank": correction_rank} if correction_rank is not None else {}))
    data, carved = with_validation(InteractionData.from_snapshot(snap), cfg)
    carved = carved or path is not None  # LightGCN files: the split carved it from train.txt
    t_read = time.perf_counter()
    fc, selection = choose_filter(data, cfg)
    t_select = time.perf_counter()
    vectors, identity = item_text_vectors(snap, get_settings().home / "text-cache") if text else (None, None)
    graph = None
    if lightgcn is not None:
        from gnn.fusion.lightgcn_part import lightgcn_part

        graph = lightgcn_part(lightgcn, list(data.items.ids), training=data)  # refused unless trained on this very training part
    _, report = fit_live_default(data, filter_fitter(fc), vectors, grid=FusionGrid(seed=seed), serve_on=None, test_curve=True,
                                 graph=graph)
    t_end = time.perf_counter()
    test = report.test_metrics
    return {
        "benchmark": "fit", "dataset": dataset, "path": str(path) if path else "bundled ml-latest-small",
        "users": data.num_users, "items": data.num_items,
        "interactions": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}, "validation_carved": carved,
        "best": {"recall@20": test["recall@20"], "ndcg@20": test["ndcg@20"]},
        "protocol": "settings chosen on the validation part; refit on train + validation; scored on test",
        "literature_protocol": {"recall@20": test.get("test_curve_best_recall@20"), "ndcg@20": test.get("test_curve_best_ndcg@20"),
                                "what": "fusion weights picked on the test curve (best test NDCG@20 over the same grid); "
                                        "filter settings still from validation"},
        "command_settings": {"select_budget_s": select_budget_s, "correction_rank": cfg.correction_rank, "text": text, "seed": seed},
        "val": report.val_metrics, "filter": fc.model_dump(), "filter_selection": selection, "fusion": report.weights.model_dump(),
        "fusion_grid_val": report.grid, "text_encoder": identity,
        "lightgcn": None if graph is None else {**graph.meta, "path": str(lightgcn),
                                                "note": "trained on the training part (epochs chosen on validation); not retrained for test"},
        "seconds": {"read": round(t_read - t0, 1), "select_filter": round(t_select - t_read, 1), **report.seconds,
                    "total": round(t_end - t0, 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench fit``."""

    @bench_app.command("fit")
    def bench_fit(
        dataset: str = typer.Option("gowalla", "--dataset", help="Dataset name (a label for the record)."),
        path: Path | None = typer.Option(None, "--path", help="LightGCN-format folder (train.txt / test.txt); "
                                         "omitted: the bundled MovieLens."),
        select_budget_s: float = typer.Option(120.0, "--select-budget", min=1.0, help="Seconds for choosing the filter on validation."),
        text: bool = typer.Option(True, "--text/--no-text", help="Fuse BERT text neighbours when the items have text."),
        seed: int = typer.Option(0, "--seed"),
        out: Path = typer.Option(Path("bench-fit"), "--out", help="Folder for bench_fit.json."),
        lightgcn: Path | None = typer.Option(None, "--lightgcn", help="A LightGCN checkpoint trained on this split's training part "
                                             "(`graphrec train --lightgcn <path>` for a LightGCN-format folder): fused with a "
                                             "weight chosen on validation."),
        correction_rank: int | None = typer.Option(None, "--correction-rank", min=0, help="As `graphrec fit --correction-rank` "
                                                   "(default: graphrec fit's, 256)."),
    ) -> None:
        """The default live model on a split: choose on validation, score on test (plus the literature's protocol, labelled)."""
        record = run_fit_bench(dataset, path, select_budget_s, text, seed, lightgcn, correction_rank)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_fit.json").write_text(json.dumps(record, indent=2))
        b, lit, v = record["best"], record["literature_protocol"], record["val"]
        typer.echo(f"{dataset}: {record['users']:,} users, {record['items']:,} items; filter {record['filter']['model']} "
                   f"(chosen on validation{', carved from train' if record['validation_carved'] else ''}), "
                   f"popularity x{record['fusion']['gamma']:g}, text x{record['fusion']['beta']:g}"
                   + (f", LightGCN x{record['fusion']['lam']:g}" if record["lightgcn"] else ""))
        typer.echo(f"  validation           Recall@20 {v['recall@20']:.4f}  NDCG@20 {v['ndcg@20']:.4f}")
        typer.echo(f"  test (quote this)    Recall@20 {b['recall@20']:.4f}  NDCG@20 {b['ndcg@20']:.4f}")
        if lit["recall@20"] is not None:
            typer.echo(f"  test, weights picked on the test curve (literature protocol) "
                       f"Recall@20 {lit['recall@20']:.4f}  NDCG@20 {lit['ndcg@20']:.4f}")
        typer.echo(f"  {record['seconds']['total']:.0f} s in all; wrote {out / 'bench_fit.json'}")
