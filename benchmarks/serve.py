"""``graphrec bench serve``: latency and throughput of the recommendations endpoint (with explanations)
at several concurrencies, side by side with the raw Cypher it runs.

The API runs as a separate ``graphrec serve`` process on 127.0.0.1 (as in production), the load
generator is this process (one thread and one keep-alive connection per concurrent client). The reference is the same
Cypher sent straight through the driver at the same concurrency: the recommendation query alone
(serving list or vector search), the same ranking with the vector search forced, and what one
request with ``explain=true`` runs (the combined recommendation + explanation query, or the two).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean in milliseconds of ``samples`` (seconds)."""
    if not samples:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    s = sorted(samples)

    def q(p: float) -> float:
        i = min(len(s) - 1, max(0, int(round(p * (len(s) - 1)))))
        return s[i] * 1000.0

    return {"p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "mean_ms": statistics.fmean(s) * 1000.0}


def run_load(fn: Callable[[int], None], n_requests: int, concurrency: int, warmup: int = 10) -> dict[str, float]:
    """Call ``fn(i)`` ``n_requests`` times from ``concurrency`` threads; latency percentiles and throughput."""
    for i in range(min(warmup, n_requests)):
        fn(i)
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                fn(i)
            except Exception:  # noqa: BLE001 - counted, reported
                with lock:
                    errors[0] += 1
                continue
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {**percentiles(lat), "throughput_rps": len(lat) / wall if wall > 0 else 0.0, "errors": float(errors[0]), "n": float(len(lat))}


def _wait_for_text_model(client: Any, timeout_s: float = 300.0) -> None:
    """Wait until ``/v1/health`` no longer reports the text model as loading (it loads in a background thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and client.get("/v1/health").json().get("text_model") == "loading":
        time.sleep(1.0)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench serve``."""

    @bench_app.command("serve")
    def bench_serve(
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: GRAPHREC_DATASET)."),
        requests: int = typer.Option(300, "--requests", "-n", min=10, help="Requests per concurrency level."),
        concurrency: str = typer.Option("1,8,32", "--concurrency", help="Comma-separated concurrency levels."),
        k: int = typer.Option(10, "--k", min=1, max=100),
        users: int = typer.Option(200, "--users", min=1, help="Distinct users sampled for the requests."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
        out: Path | None = typer.Option(None, "--out", help="Also write the JSON result to this file."),
        query_concurrency: int | None = typer.Option(
            None, "--api-query-concurrency", min=0,
            help="The API's admission limit (GRAPHREC_API_QUERY_CONCURRENCY; default: the setting, 3; 0 = none)."),
    ) -> None:
        """p50/p95/p99 + throughput of GET /v1/users/{id}/recommendations?explain=true vs the raw Cypher."""
        import httpx

        from api.cli.common import connection_info
        from graph.connection import open_driver, read
        from graph.embeddings import require_active_model
        from graph.explain import explain
        from graph.recommend import Filters, recommend, recommend_indexed
        from graph.serving.planner import explain as planner_explain
        from graph.serving.planner import recommend_live
        from graph.serving.store import GraphStore
        from graph.recommend_explained import recommend_explained
        from graphrec.settings import get_settings

        settings = get_settings()
        ds = dataset or settings.dataset
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
        info = connection_info(settings)
        # the API's driver options (notifications off: logging them would cost the load generator CPU)
        from api.deps import SERVING_DRIVER_OPTIONS

        with open_driver(info, verify=True, **SERVING_DRIVER_OPTIONS) as driver:
            model = require_active_model(driver, ds, info.database)
            store = GraphStore(driver, ds, info.database)
            live = model.kind == "live"  # users scored from their history at request time (no user vectors)
            if live:
                rows = read(driver, "MATCH (d:Dataset {name: $ds}) MATCH (u:User {dataset: $ds, gen: d.gen}) "
                                    "WHERE EXISTS { (u)-[:INTERACTED]->() } RETURN u.id AS id", {"ds": ds}, info.database)
            else:
                rows = read(driver, f"MATCH (d:Dataset {{name: $ds}}) MATCH (u:User {{dataset: $ds, gen: d.gen}}) "
                                    f"WHERE u.`{model.user_prop}` IS NOT NULL RETURN u.id AS id", {"ds": ds}, info.database)
            ids = [r["id"] for r in rows]
            if not ids:
                raise typer.BadParameter(f"no user of {ds!r} can be served: publish a model first")
            rng = random.Random(seed)
            sample = rng.sample(ids, min(users, len(ids)))

            def raw_vector(i: int) -> None:
                if live:
                    recommend_live(store, sample[i % len(sample)], k, Filters())
                    return
                recommend(driver, sample[i % len(sample)], k, Filters(), dataset=ds, database=info.database)

            def raw_index(i: int) -> None:  # the same ranking without the serving lists (vector-index search)
                if live:
                    recommend_live(store, sample[i % len(sample)], k, Filters())
                    return
                recommend_indexed(driver, sample[i % len(sample)], k, Filters(), dataset=ds, database=info.database)

            def raw_full(i: int) -> None:  # what the endpoint runs: one query when both fast paths apply, else two
                u = sample[i % len(sample)]
                if live:
                    served = recommend_live(store, u, k, Filters())
                    planner_explain(store, served, as_dicts=True)  # type: ignore[arg-type]
                    return
                if recommend_explained(driver, u, k, Filters(), dataset=ds, database=info.database) is not None:
                    return
                recs = recommend(driver, u, k, Filters(), dataset=ds, database=info.database)
                explain(driver, [x.item_id for x in recs.items], dataset=ds, user_id=u, database=info.database)

            results: dict[str, Any] = {"dataset": ds, "model_version": model.version, "k": k, "requests": requests,
                                       "users": len(sample), "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
                                       "levels": {}}
            port = _free_port()
            admission = settings.api_query_concurrency if query_concurrency is None else query_concurrency
            results["api_query_concurrency"] = admission
            env = {**os.environ, "GRAPHREC_DATASET": ds, "GRAPHREC_API_QUERY_CONCURRENCY": str(admission)}
            from api.cli.background_api import background_api

            with background_api("127.0.0.1", port, env=env, quiet=True) as api:
                limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
                with httpx.Client(base_url=api.base_url, timeout=30.0, limits=limits) as client:
                    _wait_for_text_model(client)  # the text model loads in the background: not during the timed runs

                    # the timed requests use one keep-alive stdlib connection per client thread: httpx costs the
                    # load generator ~1.7 ms of CPU per request, http.client ~0.3 ms (the same 2 cores serve)
                    local = threading.local()

                    def api_call(i: int) -> None:
                        path = f"/v1/users/{quote(sample[i % len(sample)], safe='')}/recommendations?k={k}&explain=true"
                        for attempt in range(2):
                            conn = getattr(local, "conn", None)
                            if conn is None:
                                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                            try:
                                conn.request("GET", path)
                                r = conn.getresponse()
                                body = r.read()
                                break
                            except (http.client.RemoteDisconnected, ConnectionError):  # idle keep-alive closed by the server
                                conn.close()
                                local.conn = None
                                if attempt:
                                    raise
                        if r.status != 200:
                            raise RuntimeError(body.decode(errors="replace")[:500])

                    methods: dict[str, int] = {}
                    for u in sample[: min(20, len(sample))]:  # untimed: which explanation path answered
                        for item in client.get(f"/v1/users/{u}/recommendations", params={"k": k, "explain": "true"}).json().get("items", []):
                            m = (item.get("explanation") or {}).get("method", "none")
                            methods[m] = methods.get(m, 0) + 1
                    results["explain_methods"] = methods
                    sources: dict[str, int] = {}
                    for u in sample:  # untimed: which candidate path answered (serving list or index search)
                        src = (recommend_live(store, u, k, Filters()).recs if live  # type: ignore[union-attr]
                               else recommend(driver, u, k, Filters(), dataset=ds, database=info.database)).candidates
                        sources[src] = sources.get(src, 0) + 1
                    results["candidate_sources"] = sources
                    for c in levels:
                        results["levels"][str(c)] = {
                            "api_explain": run_load(api_call, requests, c),
                            "cypher_vector": run_load(raw_vector, requests, c),
                            "cypher_vector_no_lists": run_load(raw_index, requests, c),
                            "cypher_vector_plus_explain": run_load(raw_full, requests, c),
                        }
        for lvl in results["levels"].values():
            lvl["api_overhead_x_p50"] = lvl["api_explain"]["p50_ms"] / max(lvl["cypher_vector_plus_explain"]["p50_ms"], 1e-9)
        results["load_average"] = os.getloadavg()  # 1, 5 and 15 minutes, at the end
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2))
        if as_json:
            typer.echo(json.dumps(results, indent=2))
            return
        typer.echo(f"bench serve: dataset {ds}, model {model.version}, k={k}, {requests} requests per level, "
                   f"{len(sample)} users, {os.cpu_count()} CPUs shared with Neo4j and the load generator; "
                   f"API admission limit {results['api_query_concurrency'] or 'none'} (GRAPHREC_API_QUERY_CONCURRENCY); "
                   f"load average {results['load_average_start'][0]:.2f} at the start, {results['load_average'][0]:.2f} at the end")
        typer.echo("explanations answered by: " + ", ".join(f"{m} ({n} items)" for m, n in sorted(results["explain_methods"].items()))
                   + "  (materialised = CO_LIKED of the active model, see `graphrec publish`; live = liker sets per request; no cache)")
        typer.echo("candidates answered by: " + ", ".join(f"{m} ({n} users)" for m, n in sorted(results["candidate_sources"].items()))
                   + "  (list = the user's serving list of the model, filtered; index = vector-index search; "
                   "cypher_vector_no_lists = the index search for every user)")
        header = f"{'conc':>4} {'what':<28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
        typer.echo(header)
        for c, lvl in results["levels"].items():
            for name in ("api_explain", "cypher_vector_plus_explain", "cypher_vector", "cypher_vector_no_lists"):
                m = lvl[name]
                typer.echo(f"{c:>4} {name:<28} {m['p50_ms']:>8.1f} {m['p95_ms']:>8.1f} {m['p99_ms']:>8.1f} "
                           f"{m['throughput_rps']:>8.1f} {int(m['errors']):>6}")
            typer.echo(f"{c:>4} API / raw Cypher (p50): {lvl['api_overhead_x_p50']:.2f}x")
        typer.echo(json.dumps(results))
