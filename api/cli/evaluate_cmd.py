"""``graphrec evaluate``: full-ranking evaluation of checkpoints and baselines on one snapshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from graphrec.errors import InvalidArgumentError

BASELINES = ("most_popular", "item_knn", "mf")


def format_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    """A plain-text table: one row per model, one column per metric."""
    name_w = max([5, *(len(n) for n in rows)])
    head = "model".ljust(name_w) + "".join(f"{c:>14}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, metrics in rows.items():
        lines.append(name.ljust(name_w) + "".join(f"{metrics.get(c, float('nan')):>14.4f}" for c in columns))
    return "\n".join(lines)


def evaluate(
    checkpoint: list[Path] = typer.Option([], "--checkpoint", help="Checkpoint folder to evaluate (repeatable)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name; alone: export a fresh snapshot from Neo4j."),
    snapshot: Path | None = typer.Option(None, "--snapshot", help="Evaluate on this snapshot folder."),
    lightgcn: Path | None = typer.Option(None, "--lightgcn", help="Evaluate on LightGCN-format files."),
    split: str = typer.Option("fixed", "--split", help="Split for Neo4j / LightGCN sources (must match training)."),
    param: list[str] = typer.Option([], "--param", help="Split parameter key=value (repeatable); default val_fraction=0.1."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the split (must match training)."),
    baselines: str = typer.Option("most_popular,item_knn", "--baselines", help="Comma list of most_popular, item_knn, mf ('' for none)."),
    mf_epochs: int = typer.Option(20, "--mf-epochs", help="Epochs of the BPR-MF baseline."),
    ks: str = typer.Option("10,20", "--ks", help="Comma list of cut-offs."),
    part: str = typer.Option("test", "--part", help="test (masks train + val) or val (masks train)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(Path("evaluation.json"), "--out", help="JSON results file."),
    allow_other_snapshot: bool = typer.Option(False, "--allow-other-snapshot", help="Evaluate checkpoints trained on a different snapshot hash."),
) -> None:
    """Evaluate checkpoints and baselines with the same full-ranking evaluator; print a table, write JSON."""
    import torch

    from api.cli.train_cmd import _parse_params, load_snapshot
    from gnn.checkpoint import load_checkpoint
    from gnn.config import TrainConfig
    from gnn.data import InteractionData
    from gnn.evaluate import Evaluator
    from gnn.models import build_model
    from gnn.train import create_model, train_model
    from graphrec.errors import ModelError
    from graphrec.settings import get_settings

    settings = get_settings()
    try:
        k_list = [int(k) for k in ks.split(",") if k.strip()]
    except ValueError as e:
        raise InvalidArgumentError(f"--ks must be a comma list of integers, got {ks!r}") from e
    wanted = [b.strip() for b in baselines.split(",") if b.strip()]
    bad = set(wanted) - set(BASELINES)
    if bad:
        raise InvalidArgumentError(f"unknown baselines {sorted(bad)}; known: {list(BASELINES)}")
    params = _parse_params(param)
    if split == "fixed":
        params.setdefault("val_fraction", 0.1)
    snap = load_snapshot(settings, dataset=dataset, snapshot=snapshot, lightgcn=lightgcn, split=split, params=params, seed=split_seed)
    data = InteractionData.from_snapshot(snap)
    dev = device or settings.device
    evaluator = Evaluator(data, part, ks=k_list, device=dev)
    results: dict[str, dict[str, Any]] = {}
    for path in checkpoint:
        ckpt = load_checkpoint(path)
        if ckpt.meta.snapshot_hash != data.snapshot_hash and not allow_other_snapshot:
            raise ModelError(
                f"checkpoint {path} was trained on snapshot {ckpt.meta.snapshot_hash[:12]}, not {data.snapshot_hash[:12]} "
                "(its test part may overlap this training part); pass --allow-other-snapshot to force"
            )
        ckpt.model.to(evaluator.device)
        res = evaluator.evaluate(ckpt.model)
        results[f"{ckpt.meta.model_type}:{ckpt.meta.version}"] = {**res.metrics, "seconds": res.seconds}
    for name in wanted:
        if name == "mf":
            cfg = TrainConfig(model="mf", epochs=mf_epochs, eval_every=max(1, mf_epochs // 4), device=dev)
            model = train_model(create_model(cfg, data), data, cfg, progress=True).model
        else:
            model = build_model(name, num_users=data.num_users, num_items=data.num_items)
            model.set_interactions(data.train.users, data.train.items)
            model.fit()
        res = evaluator.evaluate(model)
        results[name] = {**res.metrics, "seconds": res.seconds}
    if not results:
        raise InvalidArgumentError("nothing to evaluate: give --checkpoint and/or --baselines")
    columns = [f"{m}@{k}" for k in evaluator.ks for m in ("recall", "ndcg", "precision", "hit_rate", "map", "coverage")]
    typer.echo(f"{data.dataset} {part}: {evaluator.users.numel()} users, {data.num_items} items (device {evaluator.device}, torch threads {torch.get_num_threads()})")
    typer.echo(format_table(results, columns + ["seconds"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": data.dataset, "snapshot_hash": data.snapshot_hash, "part": part, "ks": evaluator.ks, "results": results}, indent=2))
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``graphrec evaluate`` to the app."""
    app.command("evaluate")(evaluate)
