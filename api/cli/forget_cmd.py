"""``graphrec forget-user USER_ID [--dataset D] [--json]``: erase a user (privacy requests).

The same erasure as ``DELETE /v1/admin/users/{user_id}`` (:func:`graph.erasure.forget_user`): the user in
every generation of the dataset, their interactions, feedback and tags, and what was derived from them.
"""

from __future__ import annotations

import typer


def forget_user(
    user_id: str = typer.Argument(..., help="External id of the user to erase."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: GRAPHREC_DATASET)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Erase a user: the node in every generation, interactions, feedback, tags, and derived counts."""
    from api.cli.common import open_graph
    from graph.erasure import forget_user as erase
    from graphrec.settings import get_settings

    settings = get_settings()
    ds = dataset or settings.dataset
    with open_graph(settings) as driver:
        report = erase(driver, ds, user_id, settings.neo4j_database)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(f"erased user {user_id!r} of dataset {ds!r} from generation(s) {report.generations}: "
               f"{report.interactions} interactions, {report.tags} tag applications; co-likes: "
               f"{report.co_like_pairs_reweighted} pairs re-weighted, {report.co_like_pairs_removed} removed, "
               f"{report.witness_lists} witness lists corrected")


def register(app: typer.Typer) -> None:
    """Add ``graphrec forget-user`` to the app."""
    app.command("forget-user")(forget_user)
