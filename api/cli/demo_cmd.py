"""``graphrec demo``: the whole product on the bundled MovieLens data, end to end.

Steps (each one the ordinary CLI command, run as a subprocess so the demo shows exactly what a user
would type): ``neo4j start`` (unless NEO4J_URI is set) -> ``load movielens`` -> ``snapshot``/``train``
(``graphrec fit``: the default live model; ``--trainer fuse``: the fused LightGCN + text model)
-> ``publish`` -> the API on 127.0.0.1 -> a few users' explained recommendations through HTTP ->
the Browser URL and three Cypher queries to paste into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import typer

from graphrec.errors import ConfigError, GraphrecError

DEMO_USERS = ("1", "414", "599")


def browser_queries(dataset: str, user: str, item: str) -> list[tuple[str, str]]:
    """Three Cypher queries for Neo4j Browser: the live model's neighbour scores, an explanation path, the model pointer."""
    return [
        ("The neighbour part of user %s's live scores, computed from the graph: the sum of NEIGHBOUR weights from the "
         "items they interacted with (seen items left out)" % user,
         f"""MATCH (d:Dataset {{name: '{dataset}'}})
MATCH (m:ActiveModel {{dataset: '{dataset}'}})
MATCH (u:User {{dataset: '{dataset}', gen: d.gen, id: '{user}'}})-[:INTERACTED]->(j:Item)-[n:NEIGHBOUR]->(i:Item)
WHERE n.tag = m.tag AND NOT EXISTS {{ (u)-[:INTERACTED]->(i) }}
RETURN i.id, i.title, sum(n.w) AS neighbour_score, collect(j.title)[0..3] AS because
ORDER BY neighbour_score DESC LIMIT 10"""),
        (f"Explanation paths of item {item} for user {user}: the items they liked that vote for it (switch to the graph view)",
         f"""MATCH (d:Dataset {{name: '{dataset}'}})
MATCH (m:ActiveModel {{dataset: '{dataset}'}})
MATCH p = (u:User {{dataset: '{dataset}', gen: d.gen, id: '{user}'}})-[:INTERACTED]->(j:Item)-[n:NEIGHBOUR]->
          (i:Item {{dataset: '{dataset}', gen: d.gen, id: '{item}'}})
WHERE n.tag = m.tag
RETURN p ORDER BY n.w DESC LIMIT 5"""),
        ("The active model: version, kind, weights, vector index (the pointer readers follow)",
         f"""MATCH (m:ActiveModel {{dataset: '{dataset}'}})
RETURN m.version, m.kind, m.alpha, m.gamma, m.item_index, m.n_items, m.published_at"""),
    ]


def _graphrec(*args: str, env: dict[str, str] | None = None, capture: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "api.cli.main", *args]
    typer.secho("$ graphrec " + " ".join(args), fg=typer.colors.CYAN)
    return subprocess.run(cmd, env=env or dict(os.environ), text=True, capture_output=capture, check=False, stdin=subprocess.DEVNULL)


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        tail = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-5:] if proc.stdout is not None else []
        raise ConfigError(f"demo step failed ({what}, exit {proc.returncode})" + (": " + " | ".join(tail) if tail else ""))


def _train(dataset: str, settings: object, epochs: int | None, trainer: str = "fit", lightgcn: bool = False) -> Path:
    """Export a snapshot from the graph and fit the default live model on it (``graphrec fit``; with
    ``lightgcn``, a LightGCN trained first on the same snapshot joins its fusion), or train the fused
    LightGCN + text model (``trainer="fuse"``, ``epochs`` apply). Returns the checkpoint folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snap = settings.snapshots_dir / f"demo-{dataset}-{stamp}"  # type: ignore[attr-defined]
    _check(_graphrec("snapshot", "export", "--dataset", dataset, "--split", "per_user_temporal", "--param", "test_fraction=0.2",
                     "--param", "val_fraction=0.1", "--out", str(snap)), "snapshot export")
    out = settings.models_dir / f"demo-{dataset}-{stamp}"  # type: ignore[attr-defined]
    if trainer == "fuse":
        args = ["fuse", "--snapshot", str(snap), "--dataset", dataset, "--out", str(out)] + (["--epochs", str(epochs)] if epochs else [])
        _check(_graphrec(*args), "fuse (train the fused LightGCN + text model)")
    else:
        extra: list[str] = []
        if lightgcn:
            trained = settings.models_dir / f"demo-{dataset}-{stamp}-lightgcn"  # type: ignore[attr-defined]
            _check(_graphrec("train", "--snapshot", str(snap), "--recipe", "default", "--out", str(trained),
                             *(["--epochs", str(epochs)] if epochs else [])), "train (LightGCN for the fusion)")
            extra = ["--lightgcn", str(trained)]
        _check(_graphrec("fit", "--snapshot", str(snap), "--dataset", dataset, "--out", str(out), *extra), "fit (the default live model)")
    return out


def register(app: typer.Typer) -> None:
    """Add ``graphrec demo``."""

    @app.command("demo")
    def demo_cmd(
        port: int | None = typer.Option(None, "--port", help="API port (default: GRAPHREC_API_PORT)."),
        epochs: int | None = typer.Option(None, "--epochs", help="Most training epochs of --trainer fuse or --lightgcn (default: the trainer's)."),
        trainer: str = typer.Option("fit", "--trainer", help="fit: the default live model (graph filter + text + popularity, "
                                    "minutes on a CPU); fuse: the fused LightGCN + text embedding model."),
        lightgcn: bool = typer.Option(False, "--lightgcn/--no-lightgcn", help="With --trainer fit: also train LightGCN on the "
                                      "snapshot (graphrec train --recipe default; a GPU helps; tens of minutes on a 2-core CPU) and "
                                      "fuse it with a weight chosen on validation, retrained on every interaction when it gets one."),
        skip_train: bool = typer.Option(False, "--skip-train", help="Publish the newest existing checkpoint instead of training."),
        serve: bool = typer.Option(False, "--serve/--no-serve", help="Keep the API running after the demo (Ctrl-C stops it)."),
        k: int = typer.Option(5, "--k", min=1, max=20),
    ) -> None:
        """Provision Neo4j, load MovieLens, train, publish, serve, and show explained recommendations."""
        import httpx

        from api.cli.common import connection_info
        from graphrec.settings import get_settings

        settings = get_settings()
        dataset = settings.dataset
        env = dict(os.environ)
        if not settings.neo4j_uri:
            _check(_graphrec("neo4j", "start"), "neo4j start")
        _check(_graphrec("load", "movielens", "--dataset", dataset), "load movielens")
        if lightgcn and trainer != "fit":
            raise ConfigError("--lightgcn adds LightGCN to --trainer fit; --trainer fuse trains LightGCN already")
        checkpoint = None if skip_train else _train(dataset, settings, epochs, trainer, lightgcn)
        pub = ["publish", "--dataset", dataset] + (["--checkpoint", str(checkpoint)] if checkpoint else ["--latest"])
        _check(_graphrec(*pub), "publish")

        info = connection_info(settings)
        host, p = settings.api_host, port or settings.api_port
        typer.secho(f"$ graphrec serve --host {host} --port {p}   (in the background)", fg=typer.colors.CYAN)
        from api.cli.background_api import background_api

        try:
            with background_api(host, p, env=env) as api:
                base = api.base_url
                with httpx.Client(base_url=base, timeout=60.0) as client:
                    health = client.get("/v1/health").json()
                    typer.echo(f"\nAPI up at {base}/v1 (OpenAPI docs: {base}/docs), model {health['model_version']}\n")
                    first_item = None
                    for user in DEMO_USERS:
                        r = client.get(f"/v1/users/{user}/recommendations", params={"k": k, "explain": "true"})
                        typer.secho(f"GET /v1/users/{user}/recommendations?k={k}&explain=true  -> {r.status_code}", bold=True)
                        if r.status_code != 200:
                            typer.echo(f"  {r.json().get('detail')}")
                            continue
                        for it in r.json()["items"]:
                            first_item = first_item or it["item_id"]
                            typer.echo(f"  {it['rank']}. {it['title']}  (score {it['score']:.3f})")
                            if it.get("explanation"):
                                typer.echo(f"     {it['explanation']['sentence']}")
                        typer.echo("")
                    if first_item:
                        typer.echo(f"Picture of an explanation: {base}/v1/users/{DEMO_USERS[0]}/recommendations/{first_item}/explanation.png\n")
                typer.secho("Explore in Neo4j Browser", bold=True)
                typer.echo(f"  URL: {info.browser_url or 'http://127.0.0.1:%d/browser/' % settings.neo4j_http_port}")
                typer.echo(f"  connect to {info.uri} as user {info.user} (`graphrec neo4j status` shows where the password is)\n")
                for n, (title, query) in enumerate(browser_queries(dataset, DEMO_USERS[0], first_item or "1"), 1):
                    typer.secho(f"-- {n}. {title}", fg=typer.colors.GREEN)
                    typer.echo(query + ";\n")
                if serve:
                    typer.echo(f"API running at {base} - Ctrl-C stops it")
                    api.process.wait()
                else:
                    typer.echo("The demo API is stopped now; `graphrec serve` starts it again.")
        except KeyboardInterrupt:
            pass
        except GraphrecError:
            raise
