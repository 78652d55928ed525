"""Reload under traffic: serving and feedback while ``graphrec load movielens --mode replace`` runs.

Needs a loaded MovieLens graph with a published model (``make demo`` or ``graphrec load movielens`` +
``graphrec publish``). The script:

1. starts the API on 127.0.0.1 (a free port; or uses ``--base-url``, which must be on 127.0.0.1);
2. writes ``--before`` feedback interactions (random users, items they have not rated) through
   ``POST /v1/interactions``;
3. starts a prober that sends ``GET /v1/users/{id}/recommendations`` ``--rate`` times a second for
   random users, and a writer that sends ``--during-rate`` feedback writes a second;
4. runs ``graphrec load movielens --mode replace`` (``--no-refit`` unless ``--refit``); with ``--refit``
   it keeps probing and writing until ``/v1/health`` names the model the background refit published
   (at most ``--refit-timeout`` seconds), which times the refit end to end; then ``--tail`` seconds more;
5. checks in the graph that every feedback written before is there, and that every feedback written
   during the reload is there or was answered with a retryable status (503/429 with ``Retry-After``).

It prints the numbers and writes them as JSON to ``benchmarks/results/reload_under_traffic-<time>.json``.
Everything stops by itself; it only talks to 127.0.0.1.

    .venv/bin/python benchmarks/reload_under_traffic.py --before 200 --rate 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
RETRYABLE = {429, 503}

Q_USERS = "MATCH (d:Dataset {name: $dataset}) MATCH (u:User {dataset: d.name, gen: d.gen}) RETURN u.id AS id"
Q_ITEMS = "MATCH (d:Dataset {name: $dataset}) MATCH (i:Item {dataset: d.name, gen: d.gen}) RETURN i.id AS id"
Q_SEEN = ("MATCH (d:Dataset {name: $dataset}) MATCH (u:User {dataset: d.name, gen: d.gen})-[:INTERACTED]->(i:Item) "
          "WHERE u.id IN $users RETURN u.id AS u, collect(i.id) AS items")
Q_PRESENT = ("MATCH (d:Dataset {name: $dataset}) UNWIND $pairs AS p "
             "OPTIONAL MATCH (:User {dataset: d.name, gen: d.gen, id: p.u})-[r:INTERACTED]->(:Item {dataset: d.name, gen: d.gen, id: p.i}) "
             "RETURN p.u AS u, p.i AS i, r.rating AS rating, r.source AS source")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(round(q * (len(ys) - 1))))]


class Pairs:
    """Random (user, item) pairs the user has not interacted with, each used once."""

    def __init__(self, driver: Any, dataset: str, database: str, seed: int) -> None:
        from graph.connection import read

        self.rng = random.Random(seed)
        self.users = [r["id"] for r in read(driver, Q_USERS, {"dataset": dataset}, database)]
        self.items = [r["id"] for r in read(driver, Q_ITEMS, {"dataset": dataset}, database)]
        seen = read(driver, Q_SEEN, {"dataset": dataset, "users": self.users}, database)
        self.seen = {r["u"]: set(r["items"]) for r in seen}
        self.used: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def take(self) -> tuple[str, str]:
        with self.lock:
            while True:
                u, i = self.rng.choice(self.users), self.rng.choice(self.items)
                if i not in self.seen.get(u, set()) and (u, i) not in self.used:
                    self.used.add((u, i))
                    return u, i


def main() -> None:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=None, help="Dataset (default: GRAPHREC_DATASET).")
    ap.add_argument("--base-url", default=None, help="A running API on 127.0.0.1 (default: start one).")
    ap.add_argument("--before", type=int, default=200, help="Feedback writes before the reload.")
    ap.add_argument("--rate", type=float, default=10.0, help="Recommendation probes per second.")
    ap.add_argument("--during-rate", type=float, default=2.0, help="Feedback writes per second during the reload.")
    ap.add_argument("--tail", type=float, default=20.0,
                    help="Seconds of probing after the reload ends (with --refit: after the refit's model answers).")
    ap.add_argument("--refit", action="store_true", help="Let the reload start its background refit (default: --no-refit).")
    ap.add_argument("--timeout", type=float, default=900.0, help="Give up on the reload after this many seconds.")
    ap.add_argument("--refit-timeout", type=float, default=1800.0,
                    help="With --refit: stop waiting for the refit's model after this many seconds.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import httpx

    from api.cli.background_api import background_api
    from api.cli.common import connection_info, open_graph
    from graph.connection import read
    from graphrec.settings import get_settings

    settings = get_settings()
    dataset = args.dataset or settings.dataset
    info = connection_info(settings)
    if args.base_url and urlparse(args.base_url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("--base-url must be on 127.0.0.1")

    with open_graph(settings) as driver:
        pairs = Pairs(driver, dataset, info.database, args.seed)
        if not pairs.users:
            raise SystemExit(f"dataset {dataset!r} has no users: load MovieLens and publish a model first")
        rng = random.Random(args.seed + 1)
        env = {**os.environ, "GRAPHREC_DATASET": dataset}

        def run(base: str) -> dict[str, Any]:
            client = httpx.Client(base_url=base, timeout=60.0)
            health0 = client.get("/v1/health").json()
            before: list[dict[str, Any]] = []
            failed_before = 0
            for n in range(args.before):
                u, i = pairs.take()
                try:
                    r = client.post("/v1/interactions", json={"user_id": u, "item_id": i, "rating": 4.5, "ts": 1_900_000_000 + n})
                    ok = r.status_code // 100 == 2
                except httpx.HTTPError:
                    ok = False
                if ok:
                    before.append({"u": u, "i": i, "rating": 4.5})
                else:
                    failed_before += 1

            stop = threading.Event()
            probes: list[tuple[float, int, float]] = []  # (t, status, seconds)
            failures: list[dict[str, Any]] = []  # non-2xx probes: when, status, error code
            during: list[tuple[float, dict[str, Any], int, bool]] = []  # (t, pair, status, retry-after header)
            t0 = time.monotonic()

            def probe(c: httpx.Client, u: str) -> None:
                s = time.perf_counter()
                try:
                    resp = c.get(f"/v1/users/{u}/recommendations", params={"k": 10})
                    code = resp.status_code
                    if code // 100 != 2:
                        try:
                            err = resp.json().get("code") or resp.json().get("detail")
                        except ValueError:
                            err = resp.text[:200]
                        failures.append({"t": round(time.monotonic() - t0, 2), "status": code, "error": err,
                                         "retry_after": resp.headers.get("retry-after")})
                except httpx.HTTPError as e:
                    code = 0
                    failures.append({"t": round(time.monotonic() - t0, 2), "status": 0, "error": type(e).__name__})
                probes.append((time.monotonic() - t0, code, time.perf_counter() - s))

            def prober() -> None:
                # open loop: a probe starts every 1/rate s whatever the earlier ones take (at most 16 in flight)
                c = httpx.Client(base_url=base, timeout=30.0, limits=httpx.Limits(max_connections=16))
                period, nxt = 1.0 / args.rate, time.monotonic()
                with ThreadPoolExecutor(max_workers=16) as pool:
                    while not stop.is_set():
                        pool.submit(probe, c, rng.choice(pairs.users))
                        nxt += period
                        stop.wait(max(0.0, nxt - time.monotonic()))

            def writer() -> None:
                c = httpx.Client(base_url=base, timeout=30.0)
                period, nxt, n = 1.0 / args.during_rate, time.monotonic(), 0
                while not stop.is_set():
                    u, i = pairs.take()
                    n += 1
                    try:
                        r = c.post("/v1/interactions", json={"user_id": u, "item_id": i, "rating": 3.5, "ts": 1_950_000_000 + n})
                        code, ra = r.status_code, "retry-after" in r.headers
                    except httpx.HTTPError:
                        code, ra = 0, False
                    during.append((time.monotonic() - t0, {"u": u, "i": i, "rating": 3.5}, code, ra))
                    nxt += period
                    stop.wait(max(0.0, nxt - time.monotonic()))

            threads = [threading.Thread(target=prober, daemon=True), threading.Thread(target=writer, daemon=True)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # traffic before the reload starts
            cmd = [sys.executable, "-m", "api.cli.main", "load", "movielens", "--dataset", dataset, "--mode", "replace", "--no-progress",
                   "--refit" if args.refit else "--no-refit"]
            r_start = time.monotonic() - t0
            r_end: float | None = None
            f_end: float | None = None
            refit_model: str | None = None
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, stdin=subprocess.DEVNULL)
                r_end = time.monotonic() - t0
                if args.refit and proc.returncode == 0:  # the background refit publishes a new model: wait for it
                    deadline = time.monotonic() + args.refit_timeout
                    while time.monotonic() < deadline:
                        try:
                            version = client.get("/v1/health").json().get("model_version")
                        except (httpx.HTTPError, ValueError):
                            version = None
                        if version and version != health0.get("model_version"):
                            f_end, refit_model = time.monotonic() - t0, version
                            break
                        time.sleep(2.0)
            finally:
                if r_end is None:
                    r_end = time.monotonic() - t0
                time.sleep(args.tail)
                stop.set()
                for t in threads:
                    t.join(30)
            health1 = client.get("/v1/health").json()

            present = {(r["u"], r["i"]): (r["rating"], r["source"])
                       for r in read(driver, Q_PRESENT, {"dataset": dataset, "pairs": before + [p for _, p, _, _ in during]}, info.database)}
            before_kept = sum(1 for p in before if present.get((p["u"], p["i"]), (None, None)) == (p["rating"], "feedback"))
            in_reload = [(t, p, code, ra) for t, p, code, ra in during if r_start <= t <= r_end]
            ok = [(p, code) for _, p, code, _ in during if code // 100 == 2]
            ok_kept = sum(1 for p, _ in ok if present.get((p["u"], p["i"]), (None, None)) == (p["rating"], "feedback"))
            retryable = sum(1 for _, _, code, ra in during if code in RETRYABLE and ra)
            lost = [p for _, p, code, ra in during
                    if not (code // 100 == 2 and present.get((p["u"], p["i"]), (None, None)) == (p["rating"], "feedback"))
                    and not (code in RETRYABLE and ra)]
            in_window = [p for p in probes if r_start <= p[0] <= r_end]
            lat = [s * 1000 for _, c, s in in_window if c // 100 == 2]
            by_status: dict[str, int] = {}
            for _, c, _ in probes:
                by_status[str(c)] = by_status.get(str(c), 0) + 1
            out_lines = (proc.stdout or "").strip().splitlines()
            refit: dict[str, Any] | None = None
            if args.refit:
                # from the end of the reload to the end of the run: the refit, its switch and the tail after it
                in_refit = [p for p in probes if r_end < p[0]]
                rlat = [s * 1000 for _, c, s in in_refit if c // 100 == 2]
                refit = {"published": refit_model, "seconds_after_reload": round(f_end - r_end, 1) if f_end is not None else None,
                         "probes_after_reload": len(in_refit), "non_2xx": sum(1 for _, c, _ in in_refit if c // 100 != 2),
                         "latency_ms": {"median": round(statistics.median(rlat), 1) if rlat else None,
                                        "p99": round(_pct(rlat, 0.99), 1) if rlat else None}}
            return {
                "refit": refit,
                "dataset": dataset, "command": " ".join(["graphrec", *cmd[3:]]), "reload_exit": proc.returncode,
                "reload_seconds": round(r_end - r_start, 2), "reload_output_tail": out_lines[-8:] + (proc.stderr or "").strip().splitlines()[-5:],
                "health_before": {k: health0.get(k) for k in ("status", "reason", "generation", "model_version", "coverage")},
                "health_after": {k: health1.get(k) for k in ("status", "reason", "generation", "model_version", "coverage")},
                "probes": {"rate_per_s": args.rate, "total": len(probes), "during_reload": len(in_window),
                           "non_2xx": sum(1 for _, c, _ in probes if c // 100 != 2),
                           "non_2xx_during_reload": sum(1 for _, c, _ in in_window if c // 100 != 2), "by_status": by_status,
                           "failures": failures[:20], "reload_window_s": [round(r_start, 2), round(r_end, 2)],
                           "latency_ms_during_reload": {"median": round(statistics.median(lat), 1) if lat else None,
                                                        "p99": round(_pct(lat, 0.99), 1) if lat else None,
                                                        "max": round(max(lat), 1) if lat else None}},
                "feedback_before": {"written": len(before), "failed": failed_before, "present_after": before_kept,
                                    "missing_after": len(before) - before_kept},
                "feedback_during": {"sent": len(during), "sent_while_reloading": len(in_reload), "accepted": len(ok),
                                    "accepted_present_after": ok_kept, "retryable_rejections": retryable,
                                    "lost_silently": len(lost), "lost_examples": lost[:5]},
            }

        if args.base_url:
            result = run(args.base_url.rstrip("/"))
        else:
            with background_api("127.0.0.1", _free_port(), env=env, quiet=True) as api:
                result = run(api.base_url)

    result["machine"] = f"{os.cpu_count()} CPUs, shared; Neo4j, the API, the probes and the reload on the same machine"
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"reload_under_traffic-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    p, fb, fd = result["probes"], result["feedback_before"], result["feedback_during"]
    print(f"reload ({result['command']}): exit {result['reload_exit']}, {result['reload_seconds']} s")
    print(f"probes: {p['total']} at {p['rate_per_s']}/s, {p['during_reload']} during the reload; non-2xx {p['non_2xx']} "
          f"({p['non_2xx_during_reload']} during); latency during reload median {p['latency_ms_during_reload']['median']} ms, "
          f"p99 {p['latency_ms_during_reload']['p99']} ms, max {p['latency_ms_during_reload']['max']} ms")
    print(f"feedback before: {fb['written']} written, {fb['present_after']} present after ({fb['missing_after']} missing)")
    print(f"feedback during: {fd['sent']} sent ({fd['sent_while_reloading']} while reloading), {fd['accepted']} accepted, "
          f"{fd['accepted_present_after']} of them present after, {fd['retryable_rejections']} retryable rejections, "
          f"{fd['lost_silently']} lost silently")
    if result["refit"] is not None:
        rf = result["refit"]
        print(f"background refit: model {rf['published']} serving {rf['seconds_after_reload']} s after the reload ended; "
              f"{rf['probes_after_reload']} probes from the end of the reload to the end of the run, non-2xx {rf['non_2xx']}, latency median {rf['latency_ms']['median']} ms, "
              f"p99 {rf['latency_ms']['p99']} ms")
    print(f"health before: {result['health_before']}\nhealth after: {result['health_after']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
