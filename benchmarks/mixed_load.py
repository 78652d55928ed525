"""Mixed load with locust against the API and Neo4j on this machine.

Needs a loaded dataset with a published model (``make demo``, or ``graphrec load movielens`` +
``graphrec publish``). The script starts ``graphrec serve`` on 127.0.0.1 (a free port), writes the ids of
the active generation's users and items for the locustfile, runs ``locust`` headless
(``benchmarks/locustfile.py``: 80% explained recommendations, 10% similar items, 10% feedback) with
``--users`` clients at one request a second each (Poisson arrivals by default), started over ``--ramp``
seconds, then counts ``--duration`` seconds of steady load (locust's ``--reset-stats``), stops the API, prints the
numbers and writes them as JSON to ``benchmarks/results/mixed_load-<time>.json``: per request type the
count, errors (any non-2xx or failed connection), requests per second and p50/p95/p99 in milliseconds,
and the CPU seconds the API, Neo4j and locust used during the load (all three share the machine's cores).
Everything stops by itself; it only talks to 127.0.0.1.

    .venv/bin/python benchmarks/mixed_load.py --users 100 --duration 60
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
Q_USERS = "MATCH (d:Dataset {name: $dataset}) MATCH (u:User {dataset: d.name, gen: d.gen}) RETURN u.id AS id"
Q_ITEMS = "MATCH (d:Dataset {name: $dataset}) MATCH (i:Item {dataset: d.name, gen: d.gen}) RETURN i.id AS id"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ids(dataset: str) -> tuple[list[str], list[str]]:
    from graph.connection import read
    from api.cli.common import open_graph
    from graphrec.settings import get_settings

    settings = get_settings()
    with open_graph(settings) as driver:
        users = [r["id"] for r in read(driver, Q_USERS, {"dataset": dataset}, settings.neo4j_database)]
        items = [r["id"] for r in read(driver, Q_ITEMS, {"dataset": dataset}, settings.neo4j_database)]
    if not users or not items:
        raise SystemExit(f"dataset {dataset!r} has no users or items: load it and publish a model first")
    return users, items


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v1/health", timeout=5) as r:
                body = json.loads(r.read())
                if body.get("text_model") != "loading":
                    return body
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit("the API did not become healthy in time")


def _read_stats(prefix: Path) -> dict[str, Any]:
    """Per request name: count, errors, rps and percentiles (ms) from locust's ``<prefix>_stats.csv``."""
    out: dict[str, Any] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["Name"] if row["Name"] != "Aggregated" else "all"
            out[name] = {"requests": int(row["Request Count"]), "errors": int(row["Failure Count"]),
                         "rps": round(float(row["Requests/s"]), 1), "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]),
                         "p99_ms": float(row["99%"]), "max_ms": float(row["Max Response Time"])}
    failures: list[dict[str, Any]] = []
    fpath = Path(f"{prefix}_failures.csv")
    if fpath.exists():
        with open(fpath, newline="") as f:
            failures = [{"name": r["Name"], "error": r["Error"][:300], "occurrences": int(r["Occurrences"])} for r in csv.DictReader(f)]
    out["failures"] = failures
    return out


def _cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and its children (psutil)."""
    import psutil

    out: dict[str, float] = {}
    for role, pid in roots.items():
        total = 0.0
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        out[role] = total
    return out


def _neo4j_pid(bolt_port: int) -> int | None:
    """The process listening on Neo4j's Bolt port on this machine, if it is local."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == bolt_port and conn.pid:
            return int(conn.pid)
    return None


def main() -> None:
    """Parse the options, run the load, print and save the result."""
    from graphrec.settings import get_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=None, help="Dataset (default: GRAPHREC_DATASET).")
    ap.add_argument("--users", type=int, default=100, help="Simulated clients, one request a second each (default: 100).")
    ap.add_argument("--duration", type=int, default=60, help="Seconds of load (default: 60).")
    ap.add_argument("--ramp", type=int, default=5,
                    help="Seconds over which the clients start; the numbers count only the DURATION seconds after it (default: 5).")
    ap.add_argument("--arrivals", choices=("poisson", "synchronized"), default="poisson",
                    help="poisson: independent clients (default); synchronized: every client fires together once a second.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dataset = args.dataset or get_settings().dataset
    users, items = _ids(dataset)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="graphrec-load-"))
    (tmp / "users.txt").write_text("\n".join(rng.sample(users, min(len(users), 5000))))
    (tmp / "items.txt").write_text("\n".join(rng.sample(items, min(len(items), 5000))))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRAPHREC_DATASET": dataset, "GRAPHREC_LOAD_USERS": str(tmp / "users.txt"),
           "GRAPHREC_LOAD_ITEMS": str(tmp / "items.txt"), "GRAPHREC_LOAD_ARRIVALS": args.arrivals}
    graphrec = str(Path(sys.executable).with_name("graphrec"))
    api = subprocess.Popen([graphrec, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdin=subprocess.DEVNULL)
    try:
        health = _wait_healthy(base, api)
        prefix = tmp / "locust"
        locust = str(Path(sys.executable).with_name("locust"))
        ramp_s = max(1, args.ramp)
        cmd = [locust, "-f", str(LOCUSTFILE), "--headless", "--users", str(args.users),
               "--spawn-rate", str(max(1.0, args.users / ramp_s)), "--reset-stats", "--run-time", f"{args.duration + ramp_s}s", "--host", base, "--csv", str(prefix), "--only-summary", "--stop-timeout", "10",
               "--exit-code-on-error", "0", "--loglevel", "WARNING"]
        from urllib.parse import urlparse

        settings = get_settings()
        neo4j_pid = _neo4j_pid(urlparse(settings.neo4j_uri).port or 7687 if settings.neo4j_uri else settings.neo4j_bolt_port)
        t0 = time.monotonic()
        load = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        roots = {"api": api.pid, "locust": load.pid, **({"neo4j": neo4j_pid} if neo4j_pid else {})}
        cpu0 = _cpu_seconds(roots)
        last = dict(cpu0)
        while load.poll() is None:  # children's CPU is read while they live: a process that exited is gone
            if time.monotonic() - t0 > args.duration + 120:
                load.kill()
                raise SystemExit("locust did not stop in time")
            last = {k: max(v, last.get(k, 0.0)) for k, v in _cpu_seconds(roots).items()}
            time.sleep(0.5)
        if load.returncode:
            raise SystemExit(f"locust exited with status {load.returncode}")
        wall = time.monotonic() - t0
        cpu = {k: round(last[k] - cpu0.get(k, 0.0), 1) for k in last}
        stats = _read_stats(prefix)
    finally:
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"benchmark": "mixed_load", "dataset": dataset, "model": health.get("model_version"), "clients": args.users,
              "target_rps": args.users, "duration_s": args.duration, "ramp_s": args.ramp, "arrivals": args.arrivals, "wall_s": round(wall, 1), "cpus": os.cpu_count(),
              "mix": {"explained recommendations": 0.8, "similar items": 0.1, "feedback": 0.1}, "stats": stats,
              "cpu_s": cpu, "cpu_ms_per_request": {k: round(1000 * v / max(1, stats["all"]["requests"]), 2) for k, v in cpu.items()},
              "api_workers": get_settings().api_workers, "note": "API, Neo4j and locust on the same machine"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"mixed_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    for name, s in stats.items():
        if name != "failures":
            print(f"{name:<55} {s['requests']:>6} req {s['errors']:>4} errors {s['rps']:>6} req/s "
                  f"p50 {s['p50_ms']:.0f} ms  p95 {s['p95_ms']:.0f} ms  p99 {s['p99_ms']:.0f} ms")
    print("CPU during the load: " + ", ".join(f"{k} {v:.1f} s ({result['cpu_ms_per_request'][k]:.1f} ms/request)" for k, v in cpu.items()))
    for f in stats["failures"]:
        print(f"failure: {f['occurrences']} x {f['name']}: {f['error']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
