"""Fuzz the API's contract with schemathesis: every operation, all checks, admin routes with a valid token.

The script starts a throwaway Neo4j (temporary home, free ports; ``--neo4j configured`` uses NEO4J_URI or
the provisioned server instead), loads a small random test graph into the dataset ``fuzz`` with a random
published model, serves the API in this process on 127.0.0.1 (admin jobs are accepted and stored, but their
commands run ``true``, so fuzzed reloads and retrainings change nothing), and runs
``schemathesis run --checks all`` with ``--max-examples`` per operation. It prints the numbers and writes them
as JSON to ``benchmarks/results/fuzz_api-<time>.json``. Everything stops by itself; it only talks to 127.0.0.1.

    .venv/bin/python benchmarks/fuzz_api.py --max-examples 300
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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


@contextmanager
def serve(info: Any) -> Iterator[str]:
    """The fuzz app on a test graph, served by uvicorn in a thread; yields its base URL."""
    import uvicorn

    from graph.connection import open_driver
    from graph.server import free_port

    driver = open_driver(info)
    try:
        app = fuzz_app(driver, info, DATASET, TOKEN)
    finally:
        driver.close()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, name="fuzz-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the API did not start")
        time.sleep(0.2)
    app.state.jobs.python = shutil.which("true") or "true"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def main() -> None:
    """Parse the options, fuzz, print and save the result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-examples", type=int, default=300, help="Examples per operation and phase (default: 300).")
    ap.add_argument("--neo4j", choices=("throwaway", "configured"), default="throwaway")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    tmp = Path(tempfile.mkdtemp(prefix="graphrec-fuzz-"))
    report = tmp / "run.json"
    with neo4j_server(args.neo4j) as info, serve(info) as base:
        cmd = [schemathesis, "run", f"{base}/openapi.json", "--checks", "all", "--header", f"Authorization: Bearer {TOKEN}",
               "--max-examples", str(args.max_examples), "--seed", str(args.seed), "--continue-on-failure",
               "--report", "json", "--report-json-path", str(report), "--request-timeout", "30", "--no-color"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
        wall = time.monotonic() - t0
    out_text = proc.stdout + proc.stderr
    summary = {key: int(n) for n, key in re.findall(r"(\d+) (generated|passed|failed|skipped|errored)", out_text.split("SUMMARY")[-1])}
    operations = re.search(r"API Operations:\s+(\d+) selected", out_text)
    failures = re.findall(r"^\s*\d+\.\s+(.+)$", out_text.split("FAILURES")[-1], re.M) if "FAILURES" in out_text else []
    result = {"benchmark": "fuzz_api", "schemathesis_exit": proc.returncode, "max_examples": args.max_examples,
              "operations": int(operations.group(1)) if operations else None, "summary": summary, "wall_s": round(wall, 1),
              "failures": failures[:50], "summary_text": out_text.split("SUMMARY")[-1].strip()[-3000:]}
    if report.exists():
        result["report"] = json.loads(report.read_text()).get("summary", None) if report.stat().st_size < 50_000_000 else None
    shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fuzz_api-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(out_text[-6000:])
    print(f"schemathesis exit {proc.returncode}; {summary}; {wall:.0f} s; wrote {out}")
    sys.exit(0 if proc.returncode == 0 else 1)


if __name__ == "__main__":
    main()
