"""``graphrec stats [--json]``: what is in the graph (nodes by label, relationships by type, per dataset)."""

from __future__ import annotations

import typer

from graphrec.settings import get_settings


def stats(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset in the per-dataset part."),
) -> None:
    """Print counts of nodes by label and relationships by type, and each dataset's active generation."""
    from api.cli.common import open_graph
    from graph.stats import graph_stats

    settings = get_settings()
    with open_graph(settings) as driver:
        result = graph_stats(driver, settings.neo4j_database, dataset)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo("nodes by label:")
    for label, n in result.nodes.items():
        typer.echo(f"  {label:<24}{n:>12,}")
    typer.echo("relationships by type:")
    for rel, n in result.relationships.items():
        typer.echo(f"  {rel:<24}{n:>12,}")
    if not result.datasets:
        typer.echo("no dataset loaded yet: try `graphrec load movielens`")
    for ds in result.datasets:
        typer.echo(f"dataset {ds.name}: active generation {ds.active_generation}, loaded {ds.loaded_at} from {ds.source}")
        if ds.counts is not None:
            c = ds.counts
            typer.echo(f"  users {c.users:,}, items {c.items:,}, interactions {c.interactions:,}, tag applications {c.tag_applications:,}")
            attrs = ", ".join(f"{k} {v:,}" for k, v in c.attributes.items() if v)
            if attrs:
                typer.echo(f"  attribute nodes: {attrs}")
        if ds.garbage_generations:
            typer.echo(f"  leftover generations {ds.garbage_generations}: removed by the next load or `graphrec load cleanup`")
        if ds.load_running:
            typer.echo("  a load is running (or was killed; `graphrec load cleanup` tells)")


def register(app: typer.Typer) -> None:
    """Add ``graphrec stats`` to the app."""
    app.command("stats")(stats)
