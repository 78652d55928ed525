"""``graphrec recommend``: recommendations (and explanations) from the command line, same query layer as the API."""

from __future__ import annotations

import json

import typer


def format_recommendations(recs: object, exps: dict[str, object]) -> str:
    """Plain-text rendering of a :class:`graph.recommend.RecommendationList` with explanations."""
    lines = [f"model {recs.model_version}, dataset {recs.dataset}" + (f", user {recs.user_id}" if recs.user_id else "")]  # type: ignore[attr-defined]
    for it in recs.items:  # type: ignore[attr-defined]
        lines.append(f"{it.rank:>3}. {it.title or it.item_id}  [{it.item_id}]  score {it.score:.3f}  {'|'.join(it.genres)}")
        exp = exps.get(it.item_id)
        if exp is not None:
            lines.append(f"     {exp.sentence}")  # type: ignore[attr-defined]
            for r in exp.reasons:  # type: ignore[attr-defined]
                lines.append(f"       - {r.kind:<13} w={r.weight:.2f}  {r.text}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``graphrec recommend``."""

    @app.command("recommend")
    def recommend_cmd(
        user: str | None = typer.Option(None, "--user", "-u", help="User id."),
        item: str | None = typer.Option(None, "--similar-to", help="Similar items to this item id instead."),
        k: int = typer.Option(10, "--k", "-k", min=1, max=200),
        explain_: bool = typer.Option(False, "--explain", help="Explain every item (graph paths + weights)."),
        genre: list[str] = typer.Option([], "--genre", help="Keep items with one of these genres (repeatable)."),
        year_min: int | None = typer.Option(None, "--year-min"),
        year_max: int | None = typer.Option(None, "--year-max"),
        include_seen: bool = typer.Option(False, "--include-seen", help="Do not exclude items the user interacted with."),
        diversity: float = typer.Option(0.0, "--diversity", min=0.0, max=1.0, help="MMR diversity."),
        dataset: str | None = typer.Option(None, "--dataset"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Print top-k recommendations for --user (or items similar to --similar-to)."""
        from api.cli.common import connection_info, open_graph
        from graph.recommend import Filters
        from graph.serving.planner import explain, recommend, similar_items
        from graph.serving.store import GraphStore
        from graphrec.errors import ConfigError
        from graphrec.settings import get_settings

        if (user is None) == (item is None):
            raise ConfigError("give exactly one of --user ID or --similar-to ITEM")
        settings = get_settings()
        ds = dataset or settings.dataset
        db = connection_info(settings).database
        filters = Filters(exclude_seen=not include_seen, genres=genre or None, year_min=year_min, year_max=year_max, diversity=diversity)
        with open_graph(settings) as driver:
            store = GraphStore(driver, ds, db)  # the planner: live or embedding serving, as the API does
            served = recommend(store, user, k, filters) if user is not None else similar_items(store, item, k, filters)  # type: ignore[arg-type]
            recs = served.recs
            exps = explain(store, served) if explain_ and recs.items else {}
        if as_json:
            out = recs.model_dump()
            for it in out["items"]:
                it["explanation"] = exps[it["item_id"]].model_dump() if it["item_id"] in exps else None
            typer.echo(json.dumps(out, indent=2))
        else:
            typer.echo(format_recommendations(recs, exps))
