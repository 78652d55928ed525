"""``graphrec snapshot export``: write a training snapshot of a dataset's active graph."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from graphrec.errors import InvalidArgumentError
from graphrec.settings import get_settings


def parse_params(values: list[str]) -> dict[str, object]:
    """``key=value`` strings -> dict; values parsed as JSON when possible (``0.2`` -> float)."""
    out: dict[str, object] = {}
    for item in values:
        if "=" not in item:
            raise InvalidArgumentError(f"--param expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def export(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name in the graph."),
    split: str = typer.Option(..., "--split", help="Split name: fixed, per_user_random, per_user_temporal, leave_one_out."),
    param: list[str] = typer.Option([], "--param", help="Split parameter key=value (repeatable), e.g. --param test_fraction=0.2."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    out: Path | None = typer.Option(None, "--out", help="Snapshot folder (default: GRAPHREC_HOME/snapshots/<dataset>-<split>-<hash>)."),
) -> None:
    """Export users, items (text, attributes) and interactions of the active generation, split, with a manifest."""
    from api.cli.common import open_graph
    from graph.export import export_snapshot
    from graphrec.snapshot import SplitSpec, write_snapshot

    settings = get_settings()
    spec = SplitSpec(name=split, params=parse_params(param))
    with open_graph(settings) as driver:
        snap = export_snapshot(driver, dataset, spec, settings.neo4j_database, seed=seed)
    target = out or settings.snapshots_dir / f"{dataset}-{split}-{snap.manifest.hash[:12]}"
    path = write_snapshot(snap, target)
    typer.echo(f"snapshot written to {path}")
    typer.echo(json.dumps({"dataset": dataset, "split": snap.manifest.split.model_dump(), "counts": snap.manifest.counts, "hash": snap.manifest.hash}, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``graphrec snapshot export`` to the app."""
    snapshot_app = typer.Typer(name="snapshot", help="Training snapshots exported from the graph.", no_args_is_help=True)
    snapshot_app.command("export")(export)
    app.add_typer(snapshot_app, name="snapshot")
