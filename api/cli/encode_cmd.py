"""``graphrec encode`` (item text vectors, cached) and ``graphrec fuse`` (train the feature-level
fusion model + cold-start head and save it for serving)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from graphrec.errors import InvalidArgumentError


def _load_snapshot(snapshot: Optional[Path], dataset: str, path: Optional[Path]):  # noqa: ANN202
    from gnn.fusion.experiment import load_bench_snapshot
    from graphrec.snapshot import SplitSpec, read_snapshot

    if snapshot is not None:
        return read_snapshot(snapshot)
    return load_bench_snapshot(dataset, path, SplitSpec(name="per_user_temporal", params={"test_fraction": 0.2, "val_fraction": 0.1}), 0)


def _encoder_config(settings, text_model, device, batch_size, max_length, precision=None, workers=None):  # noqa: ANN001, ANN202
    from gnn.text.encoder import EncoderConfig

    return EncoderConfig(
        model=text_model or settings.text_model, hf_hub=settings.hf_hub, device=device or settings.device,
        batch_size=batch_size, max_length=max_length, precision=precision or settings.text_precision,
        cpu_workers=workers,
    )


def _recipe(fields: Optional[str], max_tags: int):  # noqa: ANN001, ANN202
    from pydantic import ValidationError

    from gnn.text.recipe import TextRecipe

    try:
        kw: dict[str, object] = {"max_tags": max_tags}
        if fields:
            kw["fields"] = [f.strip() for f in fields.split(",") if f.strip()]
        return TextRecipe(**kw)
    except ValidationError as e:
        raise InvalidArgumentError(f"invalid text recipe: {e}", errors=e.errors()) from e


def register(app: typer.Typer) -> None:
    """Add ``encode`` and ``fuse`` to the ``graphrec`` app."""

    @app.command("encode")
    def encode(
        snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="Snapshot folder whose items are encoded."),
        dataset: str = typer.Option("movielens", "--dataset", help="Without --snapshot: read this dataset from files (movielens)."),
        path: Optional[Path] = typer.Option(None, "--path", help="Dataset folder (default: the bundled ml-latest-small)."),
        text: Optional[list[str]] = typer.Option(None, "--text", help="Encode these texts instead of items (repeatable)."),
        text_model: Optional[str] = typer.Option(None, "--text-model", help="Local model folder, or a hub name when GRAPHREC_HF_HUB=1."),
        fields: Optional[str] = typer.Option(None, "--fields", help="Recipe fields in order, e.g. title,text,genres,tags."),
        max_tags: int = typer.Option(10, "--max-tags", help="At most this many values per list field."),
        batch_size: int = typer.Option(128, "--batch-size"),
        max_length: int = typer.Option(128, "--max-length", help="Token limit per text."),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: GRAPHREC_DEVICE)."),
        precision: Optional[str] = typer.Option(
            None, "--precision", help="auto, fp32, int8 (CPU) or fp16 (CUDA) (default: GRAPHREC_TEXT_PRECISION, auto = int8 on a CPU with VNNI)."
        ),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="CPU: batches encoded at once, one thread each (default: one per torch thread)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything; do not read or write the cache."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write ids and vectors to this .npz file."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Encode only the first N items (quick throughput check)."),
    ) -> None:
        """Encode item texts (title, description, genres, tags...) with the BERT encoder; cached by text hash."""
        import numpy as np

        from gnn.text.cache import encode_with_cache
        from gnn.text.encoder import TextEncoder
        from gnn.text.recipe import build_item_texts
        from graphrec.settings import get_settings

        settings = get_settings()
        if precision is not None and precision not in ("auto", "fp32", "int8", "fp16"):
            raise InvalidArgumentError(f"--precision must be auto, fp32, int8 or fp16, not {precision!r}")
        encoder = TextEncoder(_encoder_config(settings, text_model, device, batch_size, max_length, precision, workers))
        if text:
            ids, texts = [str(i) for i in range(len(text))], list(text)
        else:
            snap = _load_snapshot(snapshot, dataset, path)
            ids, texts = snap.items["id"].tolist(), build_item_texts(snap.items, _recipe(fields, max_tags))
            if limit is not None:
                ids, texts = ids[:limit], texts[:limit]
        cache_dir = None if no_cache else settings.home / "text-cache"
        vectors, stats = encode_with_cache(encoder, texts, cache_dir, progress=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(out, ids=np.asarray(ids, dtype=str), vectors=vectors)
        tps = f"{stats.texts_per_s:.0f} texts/s" if stats.texts_per_s else "model not loaded (all cache hits)"
        typer.echo(
            f"encoded {stats.texts} texts with {stats.model} ({encoder.precision}): {stats.cache_hits} cache hits, {stats.encoded} encoded, "
            f"{stats.seconds:.1f}s, throughput {tps}; dim {vectors.shape[1] if len(vectors) else encoder.dim}"
        )
        if out is not None:
            typer.echo(f"wrote {out}")

    @app.command("fuse")
    def fuse(
        out: Path = typer.Option(..., "--out", help="Checkpoint folder to write (fusion.pt)."),
        snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="Snapshot folder to train on."),
        dataset: str = typer.Option("movielens", "--dataset"),
        path: Optional[Path] = typer.Option(None, "--path"),
        text_model: Optional[str] = typer.Option(None, "--text-model"),
        epochs: int = typer.Option(60, "--epochs"),
        device: Optional[str] = typer.Option(None, "--device"),
    ) -> None:
        """Train feature-level fusion (LightGCN + projected text) and its cold-start head; save for serving."""
        from gnn.fusion.pipeline import FuseConfig, fit_fusion
        from graphrec.settings import get_settings

        settings = get_settings()
        cfg = FuseConfig(encoder=_encoder_config(settings, text_model, device, 128, 128))
        cfg.train = cfg.train.model_copy(update={"epochs": epochs, "device": device or settings.device})
        snap = _load_snapshot(snapshot, dataset, path)
        _, summary = fit_fusion(snap, out, cfg, cache_dir=settings.home / "text-cache")
        from api.cli.publish_cmd import SNAPSHOT_MANIFEST  # publish reads the dataset from it

        (out.expanduser() / SNAPSHOT_MANIFEST).write_text(snap.manifest.model_dump_json(indent=2), encoding="utf-8")
        typer.echo(json.dumps(summary, indent=2, default=str))
