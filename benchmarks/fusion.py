"""``graphrec bench fusion``: pure LightGCN vs content kNN vs popularity vs each fusion.

Prints a table and JSON of Recall@K / NDCG@K for warm users, users with <= 5 training
interactions and cold items (protocol: :mod:`gnn.fusion.experiment`), plus text-encoding
throughput.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def format_table(result: dict, k: int = 20) -> str:
    """The metrics of :meth:`BenchResult.to_json` as a fixed-width text table."""
    groups = ("warm_users", "sparse_users", "cold_items")
    head = f"{'method':<20}" + "".join(f"{g + ' R@' + str(k):>20}{'N@' + str(k):>9}" for g in groups) + f"{'val N@' + str(k):>12}"
    lines = [head, "-" * len(head)]
    for name, row in result["metrics"].items():
        cells = ""
        for g in groups:
            m = row.get(g)
            cells += f"{m[f'recall@{k}']:>20.4f}{m[f'ndcg@{k}']:>9.4f}" if m else f"{'-':>20}{'-':>9}"
        val = result["validation_ndcg"].get(name)
        lines.append(f"{name:<20}{cells}{(f'{val:.4f}' if val is not None else '-'):>12}")
    return "\n".join(lines)


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``fusion`` to the ``bench`` sub-app."""

    @bench_app.command("fusion")
    def bench_fusion(
        dataset: str = typer.Option("movielens", "--dataset", help="movielens (bundled ml-latest-small unless --path)."),
        path: Optional[Path] = typer.Option(None, "--path", help="A MovieLens folder or a snapshot folder (manifest.json)."),
        epochs: int = typer.Option(40, "--epochs", help="Maximum training epochs (early stopping on validation NDCG@20)."),
        cold_fraction: float = typer.Option(0.1, "--cold-fraction", help="Share of interacted items held out as cold items."),
        sparse_fraction: float = typer.Option(0.2, "--sparse-fraction", help="Share of users truncated to 5 training interactions."),
        text_model: Optional[str] = typer.Option(None, "--text-model", help="Local model folder, or a hub name when GRAPHREC_HF_HUB=1."),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
        precision: Optional[str] = typer.Option(None, "--precision", help="Text encoder precision: auto, fp32, int8 (CPU), fp16 (CUDA) (default: GRAPHREC_TEXT_PRECISION)."),
        seed: int = typer.Option(2020, "--seed"),
        no_cache: bool = typer.Option(False, "--no-cache", help="Re-encode every text (measures encoder throughput)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON to this file."),
    ) -> None:
        """Compare pure LightGCN, content kNN, popularity and the fusions (warm users, <=5-interaction users, cold items)."""
        from gnn.fusion.experiment import BenchConfig, load_bench_snapshot, run_fusion_bench
        from gnn.text.encoder import EncoderConfig
        from graphrec.settings import get_settings

        settings = get_settings()
        cfg = BenchConfig(
            cold_item_fraction=cold_fraction, sparse_user_fraction=sparse_fraction, seed=seed,
            encoder=EncoderConfig(model=text_model or settings.text_model, hf_hub=settings.hf_hub, device=device or settings.device,
                                  precision=precision or settings.text_precision),
        )
        cfg.train = cfg.train.model_copy(update={"epochs": epochs, "device": device or settings.device, "seed": seed})
        snapshot = load_bench_snapshot(dataset, path, cfg.split, seed)
        result = run_fusion_bench(snapshot, cfg, cache_dir=None if no_cache else settings.home / "text-cache")
        data = result.to_json()
        typer.echo(format_table(data, cfg.k))
        enc = data["info"].get("encode") or {}
        if enc.get("texts_per_s"):
            typer.echo(f"text encoding: {enc['encoded']} texts at {enc['texts_per_s']:.0f} texts/s")
        else:
            typer.echo(f"text encoding: all {enc.get('texts')} texts from the cache (use --no-cache to measure throughput)")
        typer.echo(f"default fusion by validation NDCG@{cfg.k}: {data['default']}")
        text = json.dumps(data, indent=2, default=str)
        typer.echo(text)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
