"""Fuzz the API's contract with schemathesis: every operation, all checks, admin routes with a valid token.

The script starts a throwaway Neo4j (temporary home, free ports; ``--neo4j configured`` uses NEO4J_URI or
the provisioned server instead), loads a small random test graph into the dataset ``fuzz`` with a random
published model, and runs schemathesis' generated cases (positive and negative data, all checks) for every
operation of the OpenAPI document against the app in this process (admin jobs are accepted and stored, but
their commands run ``true``, so fuzzed reloads and retrainings change nothing). It prints the numbers and
writes them as JSON to ``benchmarks/results/fuzz_api-<time>.json``. Everything stops by itself; nothing
leaves the machine.

    .venv/bin/python benchmarks/fuzz_api.py --max-examples 150
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
DATASET = "fuzz"
TOKEN = "fuzz-admin-token-" + "0123456789abcdefghijklmnop"


def fuzz_app(driver: Any, info: Any, dataset: str, token: str) -> Any:
    """The app on a small random test graph with a random published model (the caller makes its jobs run ``true``)."""
    from api.main import create_app
    from graph.embeddings import publish
    from graph.recommend_fixtures import load_toy_graph, random_embeddings
    from graphrec.settings import Settings

    g = load_toy_graph(driver, dataset, n_users=20, n_items=40, per_user=8, seed=5, database=info.database)
    publish(driver, random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=2, version="fuzz-v1"),
            dataset, database=info.database, grace_s=0)
    return create_app(Settings(dataset=dataset, admin_token=token, preload_text_model=False, max_body_bytes=100_000), info,
                      startup_wait_s=10)


@contextmanager
def neo4j_server(mode: str) -> Iterator[Any]:
    """Connection info of a throwaway Neo4j (stopped and removed afterwards), or of the configured one."""
    from graphrec.settings import get_settings

    settings = get_settings()
    if mode == "configured":
        from graph.server.locate import connection_info

        yield connection_info(settings)
        return
    from graph.server import JarCache, Neo4jServer, default_jar_cache_dir, free_port

    home = Path(tempfile.mkdtemp(prefix="graphrec-neo4j-fuzz-"))
    server = Neo4jServer(home=home, version=settings.neo4j_version,
                         jar_cache=JarCache(default_jar_cache_dir(settings.home, settings.neo4j_version), settings.neo4j_version),
                         bolt_port=free_port(), http_port=free_port(), heap="512m", pagecache="128m",
                         extra_conf={"db.tx_log.preallocate": "false"}, die_with_parent=True)
    try:
        yield server.start(timeout=max(settings.neo4j_start_timeout_s, 300.0))
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _years_in_order(case: Any) -> bool:
    """``year_min <= year_max`` where both are given: the one rule across parameters a schema cannot state."""
    def number(x: Any) -> float | None:
        try:
            return float(x) if x is not None and not isinstance(x, bool) else None
        except (TypeError, ValueError):
            return None

    for part in (case.query, case.body):
        if isinstance(part, dict):
            lo, hi = number(part.get("year_min")), number(part.get("year_max"))
            if lo is not None and hi is not None and lo > hi:
                return False
    return True


def fuzz_operations(app: Any, token: str, examples: int) -> tuple[int, list[str]]:
    """Run schemathesis (all checks) on every operation of ``app``'s OpenAPI document, ``examples`` cases per
    operation in each generation mode (positive, negative), with the admin token; ``(cases, failures)``.

    The cases run through hypothesis directly (pytest 9 has no schemathesis plugin support) against the ASGI app.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = 0
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, headers={"Authorization": f"Bearer {token}"})
            if mode == GenerationMode.POSITIVE:
                strategy = strategy.filter(_years_in_order)

            @given(case=strategy)
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
            def run(case: Any) -> None:
                nonlocal cases
                cases += 1
                try:
                    case.call_and_validate()
                except (AssertionError, FailureGroup) as e:  # schemathesis' failed checks
                    failures.append(f"{operation.label} [{mode.value}]: {str(e).strip()[:1500]}")

            try:
                run()
            except Unsatisfiable:  # no request of this mode exists (e.g. negative data for an operation without inputs)
                pass
    return cases, failures


def main() -> None:
    """Parse the options, fuzz, print and save the result."""
    from fastapi.testclient import TestClient

    from graph.connection import open_driver

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-examples", type=int, default=150, help="Cases per operation and generation mode (default: 150).")
    ap.add_argument("--neo4j", choices=("throwaway", "configured"), default="throwaway")
    args = ap.parse_args()
    with neo4j_server(args.neo4j) as info:
        driver = open_driver(info)
        try:
            app = fuzz_app(driver, info, DATASET, TOKEN)
        finally:
            driver.close()
        with TestClient(app):  # the lifespan: driver, job store
            app.state.jobs.python = shutil.which("true") or "true"
            t0 = time.monotonic()
            cases, failures = fuzz_operations(app, TOKEN, args.max_examples)
            wall = time.monotonic() - t0
            operations = len(app.openapi()["paths"])
    result = {"benchmark": "fuzz_api", "tool": "schemathesis (all checks, positive and negative data)",
              "max_examples_per_operation_and_mode": args.max_examples, "paths": operations, "cases": cases,
              "failures": len(failures), "failure_details": failures[:50], "wall_s": round(wall, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fuzz_api-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    for f in failures[:10]:
        print(f, end="\n\n")
    print(f"{cases} generated cases over {operations} paths, {len(failures)} failures, {wall:.0f} s; wrote {out}")
    sys.exit(0 if not failures else 1)


if __name__ == "__main__":
    main()
