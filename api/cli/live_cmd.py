"""``graphrec fit`` and the live branch of ``graphrec publish``: the default served model.

``graphrec fit --snapshot DIR`` chooses a graph filter and the fusion weights on the snapshot's
validation part (carving one out of the training part when the split has none), reports the test
numbers of a refit on train + validation, and saves the form refitted on *every* interaction,
which is what ``graphrec publish`` serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def run_fit(snapshot_dir: Path, out: Path, *, select_budget_s: float = 120.0, model: str | None = None, text: bool = True,
            neighbours_top_k: int = 100, correction_rank: int | None = None, quiet: bool = False,
            lightgcn: Path | None = None, lightgcn_refit: bool = True, device: str | None = None) -> dict[str, Any]:
    """Fit the default live model from a snapshot folder (the library call behind ``graphrec fit``)."""
    from gnn.live_pipeline import LiveFitConfig, fit_live
    from graphrec.settings import get_settings
    from graphrec.snapshot import read_snapshot

    settings = get_settings()
    snap = read_snapshot(snapshot_dir)
    cfg = LiveFitConfig(select_budget_s=select_budget_s, use_text=text, neighbours_top_k=neighbours_top_k,
                        filter={"model": model} if model else None, lightgcn=str(lightgcn) if lightgcn else None,
                        lightgcn_refit=lightgcn_refit, device=device or settings.device,
                        **({"correction_rank": correction_rank} if correction_rank is not None else {}))
    _, summary = fit_live(snap, out, cfg, cache_dir=settings.home / "text-cache", progress=not quiet)
    manifest = snapshot_dir / "manifest.json"
    if manifest.is_file():  # publish reads the dataset from the training snapshot's manifest
        (out / "snapshot-manifest.json").write_text(manifest.read_text(encoding="utf-8"), encoding="utf-8")
    return summary


def publish_live_checkpoint(driver: Any, checkpoint: Path, dataset: str, *, database: str, settings: Any, text_vectors: bool = True,
                            progress: Any = None, min_coverage: float | None = None) -> Any:
    """Publish a live checkpoint through an open driver; returns :class:`graph.serving.publish_live.LivePublishReport`."""
    from graph.serving.publish_live import publish_live
    from graph.serving.store import GraphStore
    from gnn.live_checkpoint import load_live_checkpoint

    ck = load_live_checkpoint(checkpoint.expanduser())
    encode = None
    if text_vectors:
        from gnn.text.cache import encode_with_cache
        from gnn.text.encoder import TextEncoder

        encoder = TextEncoder.from_settings(settings)

        def encode(ids: list[str], texts: list[str]) -> Any:
            return encode_with_cache(encoder, texts, settings.home / "text-cache")[0]

    return publish_live(GraphStore(driver, dataset, database), ck.form, ck.item_ids, version=ck.meta.version,
                        checkpoint=str(checkpoint.expanduser().absolute()), text_vectors=encode, progress=progress,
                        min_coverage=min_coverage)


def register(app: typer.Typer) -> None:
    """Add ``graphrec fit``."""

    @app.command("fit")
    def fit_cmd(
        snapshot: Path = typer.Option(..., "--snapshot", "-s", help="Snapshot folder (graphrec snapshot export)."),
        out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
        dataset: str | None = typer.Option(None, "--dataset", help="Expected dataset of the snapshot (refused when it differs)."),
        model: str | None = typer.Option(None, "--model", help="Use this graph filter (gfcf, chebycf, ease) with its default "
                                          "settings instead of choosing one on validation."),
        select_budget_s: float = typer.Option(120.0, "--select-budget", min=1.0, help="Seconds for choosing the filter on validation."),
        text: bool = typer.Option(True, "--text/--no-text", help="Fuse BERT text neighbours when items have text."),
        neighbours_top_k: int = typer.Option(100, "--neighbours", min=1, help="Filter neighbours stored per item."),
        correction_rank: int | None = typer.Option(None, "--correction-rank", min=0, help="Rank of the low-rank correction of the cut "
                                                   "neighbours (default 256: better rankings at a factor product per request; 0: "
                                                   "none, the cheapest to serve)."),
        lightgcn: Path | None = typer.Option(None, "--lightgcn", help="LightGCN checkpoint trained on this snapshot (graphrec train "
                                             "--snapshot): fused with a weight chosen on validation."),
        lightgcn_refit: bool = typer.Option(True, "--lightgcn-refit/--no-lightgcn-refit", help="When LightGCN gets a weight, retrain "
                                            "it on every interaction for its best epoch count before serving (the default); "
                                            "--no-lightgcn-refit serves the checkpoint's training-part model."),
        device: str | None = typer.Option(None, "--device", help="Where the LightGCN refit trains: auto (a GPU when present), cpu or "
                                          "cuda (default: GRAPHREC_DEVICE)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Fit the default live model: choose on validation, report test, refit on every interaction for serving."""
        if dataset is not None:
            from graphrec.errors import DatasetMismatchError
            from graphrec.snapshot import read_snapshot

            found = read_snapshot(snapshot, verify=False).manifest.dataset
            if found != dataset:
                raise DatasetMismatchError(f"snapshot {snapshot} is of dataset {found!r}, not {dataset!r}")
        summary = run_fit(snapshot, out, select_budget_s=select_budget_s, model=model, text=text, neighbours_top_k=neighbours_top_k,
                          correction_rank=correction_rank, quiet=as_json, lightgcn=lightgcn,
                          lightgcn_refit=lightgcn_refit, device=device)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        f, w = summary["filter"], summary["fusion"]
        lg = f" + LightGCN x{w['lam']:g}" if summary.get("lightgcn") else ""
        typer.echo(f"fitted {f['model']} + text x{w['beta']:g} + popularity x{w['gamma']:g}{lg} -> {summary['checkpoint']}")
        typer.echo(f"validation Recall@20 {summary['val']['recall@20']:.4f} NDCG@20 {summary['val']['ndcg@20']:.4f}; "
                   f"test (refit on train + val) Recall@20 {summary['test'].get('recall@20', float('nan')):.4f} "
                   f"NDCG@20 {summary['test'].get('ndcg@20', float('nan')):.4f}")
        typer.echo(f"served form fitted on {', '.join(summary['served_on'])}; {summary['neighbours']:,} neighbour weights, "
                   f"rank {summary['rank']}; {summary['seconds']['total']:.0f} s")
        if summary.get("lightgcn_served"):
            typer.echo(f"LightGCN part: {summary['lightgcn_served']}")
