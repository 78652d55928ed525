"""``graphrec publish``: write a trained model's embeddings into Neo4j, index them, switch the active model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from graphrec.errors import ConfigError, DatasetMismatchError, ModelError

SNAPSHOT_MANIFEST = "snapshot-manifest.json"
"""The training snapshot's manifest, copied into a fusion checkpoint folder by ``graphrec fuse``."""


@dataclass
class LoadedEmbeddings:
    """An ``EmbeddingSet``-like bundle plus the optional cold-start model of the same checkpoint."""

    model_version: str
    user_ids: list[str]
    user_vectors: Any
    item_ids: list[str]
    item_vectors: Any
    coldstart: Any = None


def _is_checkpoint(p: Path) -> bool:
    """A checkpoint folder (``model.pt`` or ``fusion.pt`` inside), a ``fusion.pt`` or an ``.npz`` file."""
    if p.is_dir():
        return (p / "model.pt").is_file() or (p / "fusion.pt").is_file()
    return p.is_file() and (p.suffix == ".npz" or p.name == "fusion.pt")


def _checkpoint_dataset(p: Path) -> str | None:
    """The dataset a checkpoint folder records in its ``meta.json`` (None when it records none)."""
    meta = p / "meta.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError):
        return None


def _fusion_snapshot_hash(p: Path) -> str | None:
    """The snapshot hash a fusion checkpoint records (``meta.metrics.snapshot_hash``), without its model."""
    f = p / "fusion.pt" if p.is_dir() else p
    if f.name != "fusion.pt" or not f.is_file():
        return None
    try:
        import torch

        meta = torch.load(f, map_location="cpu", weights_only=False).get("meta") or {}
    except Exception:  # noqa: BLE001 - unreadable: load_embeddings reports it
        return None
    h = (meta.get("metrics") or {}).get("snapshot_hash")
    return str(h) if h else None


def checkpoint_dataset(checkpoint: Path, snapshots_dir: Path | None = None) -> tuple[str | None, str]:
    """The dataset a checkpoint was trained on, from its training snapshot's manifest, and where that came from.

    Looked up in order: ``meta.json`` (LightGCN checkpoints record the snapshot's dataset), the
    snapshot manifest copied next to a fusion checkpoint (:data:`SNAPSHOT_MANIFEST`), and the snapshot
    under ``snapshots_dir`` whose manifest has the content hash the checkpoint records. ``(None, why)``
    when none of them names one.
    """
    p = checkpoint.expanduser()
    folder = p if p.is_dir() else p.parent
    ds = _checkpoint_dataset(folder)
    if ds:
        return ds, f"{folder / 'meta.json'}"
    manifest = folder / SNAPSHOT_MANIFEST
    if manifest.is_file():
        try:
            ds = json.loads(manifest.read_text(encoding="utf-8")).get("dataset")
        except (OSError, ValueError):
            ds = None
        if ds:
            return str(ds), str(manifest)
    digest = _fusion_snapshot_hash(p)
    if digest and snapshots_dir is not None and snapshots_dir.is_dir():
        for m in sorted(snapshots_dir.glob("*/manifest.json")):
            try:
                data = json.loads(m.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if data.get("hash") == digest and data.get("dataset"):
                return str(data["dataset"]), str(m)
    return None, "the checkpoint records no dataset and no known snapshot"


def resolve_dataset(checkpoint: Path, explicit: str | None, default: str, snapshots_dir: Path | None = None) -> tuple[str, str]:
    """The dataset to publish ``checkpoint`` onto: the one its snapshot names; ``explicit`` must agree.

    Returns:
        ``(dataset, where it came from)``.

    Raises:
        DatasetMismatchError: ``explicit`` differs from the checkpoint's dataset.
    """
    found, source = checkpoint_dataset(checkpoint, snapshots_dir)
    if found is not None and explicit is not None and explicit != found:
        raise DatasetMismatchError(f"checkpoint {checkpoint} was trained on dataset {found!r} (from {source}), not {explicit!r}; "
                                   f"publish it with --dataset {found} or train a model on {explicit!r}")
    if found is not None:
        return found, source
    return (explicit, "--dataset") if explicit is not None else (default, f"GRAPHREC_DATASET ({source})")


def latest_checkpoint(models_dir: Path, dataset: str | None = None) -> Path:
    """The most recently written checkpoint under ``models_dir``, at most two folders down.

    ``graphrec train`` writes ``models/<dataset>/<version>/``, ``graphrec fuse`` and the demo
    ``models/<name>/``; partial folders (names starting with ``.``) are skipped. With ``dataset``,
    a checkpoint that records another dataset in its ``meta.json`` is skipped.

    Raises:
        ConfigError: No models folder, or no checkpoint in it.
    """
    if not models_dir.is_dir():
        raise ConfigError(f"no models folder {models_dir}: train a model first (`graphrec train`)")
    candidates: list[Path] = []
    for first in models_dir.iterdir():
        if first.name.startswith("."):
            continue
        if _is_checkpoint(first):
            candidates.append(first)
        elif first.is_dir():
            candidates += [p for p in first.iterdir() if not p.name.startswith(".") and _is_checkpoint(p)]
    if dataset is not None:
        candidates = [p for p in candidates if _checkpoint_dataset(p) in (None, dataset)]
    if not candidates:
        where = f" for dataset {dataset!r}" if dataset is not None else ""
        raise ConfigError(f"no checkpoint{where} in {models_dir}: train a model first (`graphrec train`)")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_embeddings(checkpoint: Path, with_coldstart: bool = True) -> LoadedEmbeddings:
    """Read user/item embeddings from a checkpoint.

    Accepted: a LightGCN checkpoint (``gnn.checkpoint.export_embeddings``), a fusion checkpoint
    (``fusion.pt`` or its folder, which also gives the cold-start model), or an ``.npz`` with
    ``model_version``, ``user_ids``, ``user_vectors``, ``item_ids``, ``item_vectors``.

    Raises:
        ModelError: The checkpoint cannot be read.
    """
    import numpy as np

    p = checkpoint.expanduser()
    if not p.exists():
        raise ConfigError(f"checkpoint {p} does not exist")
    if p.suffix == ".npz":
        z = np.load(p, allow_pickle=False)
        return LoadedEmbeddings(str(z["model_version"]), [str(x) for x in z["user_ids"]], z["user_vectors"],
                                [str(x) for x in z["item_ids"]], z["item_vectors"])
    fusion = p / "fusion.pt" if p.is_dir() else p
    if fusion.name == "fusion.pt" and fusion.exists():
        try:
            from gnn.fusion.coldstart import ColdStart
        except ImportError as e:  # pragma: no cover
            raise ModelError(f"fusion checkpoint {fusion} needs gnn.fusion: {e}") from e
        cs = ColdStart.from_checkpoint(fusion)
        created = int(getattr(cs.meta, "created_at", 0) or 0)
        version = f"{cs.meta.model_type}-{created}"
        return LoadedEmbeddings(version, list(cs.meta.user_ids), cs.user_embeddings, list(cs.meta.item_ids), cs.item_embeddings,
                                coldstart=cs if with_coldstart else None)
    try:
        from gnn.embeddings import export_embeddings
    except ImportError as e:  # pragma: no cover
        raise ModelError(f"cannot read {p}: not a fusion checkpoint or .npz, and gnn.embeddings is not available ({e})") from e
    es = export_embeddings(p)
    return LoadedEmbeddings(str(es.model_version), [str(x) for x in es.user_ids], es.user_vectors, [str(x) for x in es.item_ids],
                            es.item_vectors)


def load_score_fusion(checkpoint: Path, emb: LoadedEmbeddings) -> Any:
    """The serving tables of a fusion checkpoint's score-level fusion (``None`` for other checkpoints or
    when it carries no validation-fitted weights)."""
    if emb.coldstart is None or getattr(emb.coldstart.meta, "score_fusion", None) is None:
        return None
    from gnn.fusion.serving import serving_fusion_from_checkpoint

    return serving_fusion_from_checkpoint(checkpoint)


def publish_checkpoint(
    driver: Any, checkpoint: Path, dataset: str, *, database: str, settings: Any, text_vectors: bool = True, score_fusion: bool = True,
    progress: Any = None, serving_list_size: int | None = None, min_coverage: float | None = None,
) -> Any:
    """Publish ``checkpoint`` through an open driver: embeddings, cold items, text vectors and, for a
    fusion checkpoint, the score-level fusion serving tables. Returns the :class:`graph.embeddings.PublishReport`.

    ``min_coverage``: refuse (:class:`~graphrec.errors.CoverageTooLowError`, before writing) a model whose
    items cover less than this share of the active generation's items."""
    from graph.embeddings import publish
    from graph.serving_lists import DEFAULT_LIST_SIZE

    emb = load_embeddings(checkpoint)
    cold = emb.coldstart.item_vectors if emb.coldstart is not None else None
    text = _text_encoder(emb, settings, checkpoint.expanduser()) if text_vectors else None
    fusion = load_score_fusion(checkpoint.expanduser(), emb) if score_fusion and text is not None else None
    return publish(driver, emb, dataset, database=database, checkpoint=str(checkpoint.expanduser().absolute()),
                   cold_item_vectors=cold, text_vectors=text, score_fusion=fusion, progress=progress,
                   serving_list_size=DEFAULT_LIST_SIZE if serving_list_size is None else serving_list_size,
                   min_coverage=min_coverage)


def run_publish(checkpoint: Path, dataset: str, text_vectors: bool = True, quiet: bool = False, score_fusion: bool = True,
                serving_list_size: int | None = None, min_coverage: float | None = None) -> dict[str, Any]:
    """Publish ``checkpoint`` into the dataset's graph (the library call behind the command); ``min_coverage``
    defaults to GRAPHREC_MIN_COVERAGE."""
    from tqdm import tqdm

    from api.cli.common import open_graph
    from graphrec.settings import get_settings

    settings = get_settings()
    from gnn.live_checkpoint import live_checkpoint_dir

    live_dir = live_checkpoint_dir(checkpoint.expanduser())
    if live_dir is not None:  # the default model: users are scored from their history at request time
        from api.cli.live_cmd import publish_live_checkpoint

        with open_graph(settings) as driver, tqdm(desc="publish", unit="row", disable=quiet) as bar:
            live = publish_live_checkpoint(driver, live_dir, dataset, database=driver_db(settings), settings=settings,
                                           text_vectors=text_vectors, progress=bar.update,
                                           min_coverage=settings.min_coverage if min_coverage is None else min_coverage)
        return {**live.model_dump(), "live": True}
    with open_graph(settings) as driver, tqdm(desc="publish", unit="row", disable=quiet) as bar:
        report = publish_checkpoint(driver, checkpoint, dataset, database=driver_db(settings), settings=settings,
                                    text_vectors=text_vectors, score_fusion=score_fusion, progress=bar.update,
                                    serving_list_size=serving_list_size,
                                    min_coverage=settings.min_coverage if min_coverage is None else min_coverage)
        from graph.co_likes import build_co_likes  # explanations' materialised co-likes of the new model (latency)

        co_likes = build_co_likes(driver, dataset, tag=report.model.tag, database=driver_db(settings), progress=bar.update)
    return {**report.model_dump(), "co_likes": co_likes.model_dump()}


def _text_encoder(emb: LoadedEmbeddings, settings: Any, checkpoint: Path) -> Any:
    """``(item_ids, texts) -> vectors``: the text vectors a fusion checkpoint was trained with (its frozen
    ``features_0`` block, no encoding needed), else the checkpoint's / the default encoder with the cache."""
    try:
        from gnn.text.cache import encode_with_cache
        from gnn.text.encoder import TextEncoder
    except ImportError:  # pragma: no cover - text package missing: no semantic explanations
        return None
    import numpy as np

    stored: dict[str, Any] = {}
    if emb.coldstart is not None:
        try:
            import torch

            f = checkpoint / "fusion.pt" if checkpoint.is_dir() else checkpoint
            block = torch.load(f, map_location="cpu", weights_only=False)["state_dict"].get("features_0")
            if block is not None and block.shape[0] == len(emb.coldstart.meta.item_ids):
                stored = dict(zip(emb.coldstart.meta.item_ids, block.numpy()))
        except Exception:  # noqa: BLE001 - fall back to encoding
            stored = {}
    encoder = emb.coldstart.encoder if emb.coldstart is not None else TextEncoder.from_settings(settings)
    cache = settings.home / "text-cache"

    def encode(ids: list[str], texts: list[str]) -> Any:
        missing = [n for n, i in enumerate(ids) if i not in stored]
        fresh = encode_with_cache(encoder, [texts[n] for n in missing], cache)[0] if missing else None
        dim = fresh.shape[1] if fresh is not None else next(iter(stored.values())).shape[0]
        out = np.zeros((len(ids), dim), dtype=np.float32)
        for n, i in enumerate(ids):
            if i in stored:
                out[n] = stored[i]
        if fresh is not None:
            out[missing] = fresh
        return out

    return encode


def driver_db(settings: Any) -> str:
    """The Neo4j database of the resolved connection."""
    from api.cli.common import connection_info

    return connection_info(settings).database


def register(app: typer.Typer) -> None:
    """Add ``graphrec publish``."""

    @app.command("publish")
    def publish_cmd(
        checkpoint: Path | None = typer.Option(None, "--checkpoint", "-c", help="Checkpoint (LightGCN, fusion folder/fusion.pt, or .npz)."),
        latest: bool = typer.Option(False, "--latest", help="Publish the newest checkpoint under GRAPHREC_HOME/models."),
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: the one the checkpoint's training "
                                            "snapshot names, else GRAPHREC_DATASET); a different one is refused."),
        text_vectors: bool = typer.Option(True, "--text-vectors/--no-text-vectors", help="Store text vectors for semantic explanations "
                                          "(and score fusion's content part)."),
        score_fusion: bool = typer.Option(True, "--score-fusion/--no-score-fusion", help="Fusion checkpoints: also publish the "
                                          "score-level fusion (graph + content + popularity) so serving ranks like the offline default."),
        serving_list_size: int = typer.Option(200, "--serving-list-size", min=0, help="Store every user's best N unseen items under "
                                              "the served ranking; requests filter that list instead of searching the indexes "
                                              "(exact; falls back to the search when filters leave fewer than k). 0: no lists."),
        min_coverage: float | None = typer.Option(None, "--min-coverage", min=0.0, max=1.0, help="Refuse a model whose item ids "
                                                  "cover less than this share of the active generation's items (default: "
                                                  "GRAPHREC_MIN_COVERAGE, 0.5; 0 turns the check off)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Write embeddings + a cosine vector index into Neo4j and switch the active model atomically."""
        from graphrec.settings import get_settings

        settings = get_settings()
        if checkpoint is None and not latest:
            raise ConfigError("give --checkpoint PATH or --latest")
        path = checkpoint if checkpoint is not None else latest_checkpoint(settings.models_dir, dataset or settings.dataset)
        target, source = resolve_dataset(path, dataset, settings.dataset, settings.snapshots_dir)
        if not as_json:
            typer.echo(f"dataset {target} (from {source})", err=True)
        report = run_publish(path, target, text_vectors=text_vectors, quiet=as_json, score_fusion=score_fusion,
                             serving_list_size=serving_list_size, min_coverage=min_coverage)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        m = report["model"]
        if report.get("live"):
            typer.echo(f"published live model {m['version']} (tag {m['tag']}) for dataset {m['dataset']}: {report['items_with_factors']} "
                       f"items with factors (rank {max(m['dim'] - 1, 0)}), {report['neighbour_relationships']:,} NEIGHBOUR relationships, "
                       f"{report['text_vectors']} text vectors; users are scored from their history at request time; previous "
                       f"model dropped: {report['previous_tag'] or '-'}; {report['seconds']:.1f} s")
            return
        typer.echo(f"published {m['version']} (tag {m['tag']}) for dataset {m['dataset']}: {report['users_written']} user and "
                   f"{report['items_written']} item vectors, dim {m['dim']}, index {m['item_index']}")
        typer.echo(f"cold items embedded from text: {report['cold_items']}; items without a vector: {report['items_without_vector']}; "
                   f"text vectors: {report['text_vectors']}; previous model dropped: {report['previous_tag'] or '-'}; "
                   f"{report['seconds']:.1f} s")
        sf = report.get("score_fusion")
        if sf:
            w = "; ".join(f"<= {b}: {ws[0]:g}/{ws[1]:g}/{ws[2]:g}" if n < len(sf["bounds"]) else f"others: {ws[0]:g}/{ws[1]:g}/{ws[2]:g}"
                          for n, (b, ws) in enumerate(zip([*sf["bounds"], None], sf["weights"])))
            typer.echo(f"score fusion served (graph/content/popularity by history size: {w}); {sf['users_with_stats']} user "
                       f"statistics, {sf['profiles']} content profiles, text index {sf['text_index']}")
        else:
            typer.echo("score fusion: off (not a fusion checkpoint with fitted weights, --no-score-fusion or --no-text-vectors): "
                       "serving ranks by the embeddings' dot product")
        lists = report.get("serving_lists") or 0
        typer.echo(f"serving lists: {lists} users x {m.get('top_size') or 0} items" if lists
                   else "serving lists: off (every request searches the vector indexes)")
