"""``graphrec bench feedback-concurrent``: many writers send feedback at once; nothing may fail, be lost or be duplicated.

``--writers`` threads (one keep-alive connection each) send ``--writes`` ``POST /v1/interactions`` in
all to an API on 127.0.0.1 (started here as a ``graphrec serve`` child unless ``--url`` names one on
the loopback), over the loaded graph of ``--dataset``. The writes are drawn with a seed:

* ``new_user``: one of ``--new-users`` users this run creates (``create_user``), from every writer;
* ``rate``: a known user and an item drawn by popularity (the number of its interactions), a rating
  of 0.5-5 stars (new likes, ratings below the like threshold);
* ``rerate``: a pair the plan already wrote, with another rating (likes added and removed);
* ``replay``: an exact copy (same rating and ts) of an earlier write, sent by another writer.

Every pair's distinct writes come from one writer with growing timestamps, so the stored rating of
every pair is known: afterwards the graph is checked for exactly one relationship per pair holding
its newest write, exactly one node per new user, and a fresh co-like marker. Sending starts once the
API is warm (``/v1/health`` answers and its text model is no longer loading in the background). The
run stops by itself (``--max-seconds``). The graph keeps what the benchmark wrote: run it on a copy of the graph.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import typer

KINDS = ("new_user", "rate", "rerate", "replay")
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Q_USERS = """
MATCH (d:Dataset {name: $ds})
MATCH (u:User {dataset: $ds, gen: d.gen})
RETURN u.id AS id ORDER BY id
"""

Q_ITEMS = """
MATCH (d:Dataset {name: $ds})
MATCH (i:Item {dataset: $ds, gen: d.gen})
WITH i, COUNT { (i)<-[:INTERACTED]-() } AS n WHERE n > 0
RETURN i.id AS id, n ORDER BY id
"""

Q_STATE = """
MATCH (d:Dataset {name: $ds})
OPTIONAL MATCH (m:ActiveModel {dataset: $ds})
OPTIONAL MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
RETURN d.gen AS gen, m.tag AS tag, cl.rels AS rels, cl.gen = d.gen AS same_gen, COUNT { ()-[:INTERACTED]->() } AS live,
       coalesce(d.feedback_writes, 0) AS feedback_writes
"""

Q_PAIRS = """
MATCH (d:Dataset {name: $ds})
UNWIND $pairs AS p
OPTIONAL MATCH (u:User {dataset: $ds, gen: d.gen, id: p[0]})-[r:INTERACTED]->(i:Item {dataset: $ds, gen: d.gen, id: p[1]})
RETURN p[0] AS u, p[1] AS i, count(r) AS n, collect([r.rating, r.ts]) AS values
"""

# Timestamps of this run start after every feedback timestamp stored (a rerun's writes are newer, not outdated).
Q_MAX_TS = "MATCH ()-[r:INTERACTED {source: 'feedback'}]->() RETURN max(r.ts) AS ts"

Q_NEW_USERS = """
MATCH (d:Dataset {name: $ds})
UNWIND $ids AS id
RETURN id, COUNT { (u:User {dataset: $ds, gen: d.gen, id: id}) } AS n
"""


def plan_writes(users: list[str], items: list[tuple[str, int]], *, writes: int, writers: int, new_users: int, seed: int,
                run: str, ts0: int) -> tuple[list[list[dict[str, Any]]], dict[tuple[str, str], tuple[float, int]], list[str]]:
    """The writers' request lists, the expected final ``(rating, ts)`` of every pair, the new user ids (pure).

    Shares: 15 % new users, 10 % re-ratings, 10 % replays, the rest known users on popular items.
    """
    rng = random.Random(seed)
    ids = [i for i, _ in items]
    weights = [float(n) for _, n in items]
    fresh = [f"{run}-u{k}" for k in range(new_users)]
    ratings = [0.5 * k for k in range(1, 11)]
    lists: list[list[dict[str, Any]]] = [[] for _ in range(writers)]
    owner: dict[tuple[str, str], int] = {}
    sent: list[tuple[int, dict[str, Any]]] = []
    expected: dict[tuple[str, str], tuple[float, int]] = {}
    ts = ts0
    for k in range(writes):
        w = k % writers
        roll = rng.random()
        if roll < 0.10 and sent:  # replay: another writer sends a copy of an earlier write
            src_w, body = sent[rng.randrange(len(sent))]
            lists[(src_w + 1 + rng.randrange(writers - 1)) % writers if writers > 1 else 0].append({**body, "kind": "replay"})
            continue
        ts += 1
        if roll < 0.20 and sent:  # re-rate a pair the plan wrote, by its owner
            _, prev = sent[rng.randrange(len(sent))]
            user, item, create = prev["user_id"], prev["item_id"], prev["create_user"]
            kind = "rerate"
        elif roll < 0.35:
            user, item, create, kind = fresh[rng.randrange(len(fresh))], rng.choices(ids, weights)[0], True, "new_user"
        else:
            user, item, create, kind = users[rng.randrange(len(users))], rng.choices(ids, weights)[0], False, "rate"
        w = owner.setdefault((user, item), w)
        body = {"user_id": user, "item_id": item, "rating": rng.choice(ratings), "ts": ts, "create_user": create}
        lists[w].append({**body, "kind": kind})
        sent.append((w, body))
        expected[(user, item)] = (body["rating"], ts)
    return lists, expected, fresh


def _post(conn_box: list[http.client.HTTPConnection | None], host: str, port: int, body: bytes) -> tuple[int, bytes]:
    for attempt in range(2):
        conn = conn_box[0]
        if conn is None:
            conn = conn_box[0] = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request("POST", "/v1/interactions", body=body, headers={"content-type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read()
        except (http.client.RemoteDisconnected, ConnectionError):  # idle keep-alive closed by the server
            conn.close()
            conn_box[0] = None
            if attempt:
                raise
        except (http.client.HTTPException, OSError):  # a broken exchange: a new connection for the next request
            conn.close()
            conn_box[0] = None
            raise
    raise AssertionError("unreachable")


def wait_until_warm(base_url: str, max_seconds: float) -> float:
    """Wait until ``/v1/health`` answers and the API's text model has stopped loading in the background
    (a start-up cost that would otherwise share the CPUs with the first seconds of the run); returns the
    seconds waited."""
    u = urlparse(base_url)
    t0 = time.monotonic()
    while True:
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=10)
        try:
            conn.request("GET", "/v1/health")
            r = conn.getresponse()
            body = json.loads(r.read() or b"{}")
            if r.status == 200 and body.get("text_model") != "loading":
                return time.monotonic() - t0
        except (http.client.HTTPException, OSError, ValueError):
            pass
        finally:
            conn.close()
        if time.monotonic() - t0 > max_seconds:
            raise typer.BadParameter(f"the API at {base_url} was not ready after {max_seconds:.0f} s")
        time.sleep(0.5)


def send_all(base_url: str, lists: list[list[dict[str, Any]]], max_seconds: float) -> tuple[list[dict[str, Any]], float, int]:
    """Run one thread per list; returns the samples, the wall time and the requests left unsent at the deadline."""
    u = urlparse(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    samples: list[dict[str, Any]] = []
    unsent = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(len(lists))
    deadline = [0.0]

    def writer(reqs: list[dict[str, Any]]) -> None:
        box: list[http.client.HTTPConnection | None] = [None]
        out = []
        barrier.wait()
        for n, req in enumerate(reqs):
            if time.monotonic() > deadline[0]:
                with lock:
                    unsent[0] += len(reqs) - n
                break
            body = json.dumps({k: v for k, v in req.items() if k != "kind"}).encode()
            t0 = time.perf_counter()
            try:
                status, text = _post(box, host, port, body)
            except (http.client.HTTPException, OSError) as e:
                status, text = 0, f"{type(e).__name__}: {e}".encode()
            dt = time.perf_counter() - t0
            flags = {}
            if status == 201:
                js = json.loads(text)
                flags = {"replayed": bool(js.get("replayed")), "outdated": bool(js.get("outdated")), "created_user": js.get("created_user")}
            out.append({"kind": req["kind"], "status": status, "s": dt, **flags, **({"error": text[:300].decode(errors="replace")}
                                                                                   if status != 201 else {})})
        if box[0] is not None:
            box[0].close()
        with lock:
            samples.extend(out)

    threads = [threading.Thread(target=writer, args=(reqs,), daemon=True) for reqs in lists]
    t_start = time.perf_counter()
    deadline[0] = time.monotonic() + max_seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 120)
    return samples, time.perf_counter() - t_start, unsent[0]


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench feedback-concurrent``."""

    @bench_app.command("feedback-concurrent")
    def bench_feedback_concurrent(
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: GRAPHREC_DATASET)."),
        writes: int = typer.Option(4000, "--writes", min=1, help="POST /v1/interactions in all."),
        writers: int = typer.Option(32, "--writers", min=1, max=256, help="Concurrent writers (threads, one connection each)."),
        new_users: int = typer.Option(200, "--new-users", min=1, help="Users this run creates."),
        seed: int = typer.Option(0, "--seed"),
        url: str | None = typer.Option(None, "--url", help="An API already running on 127.0.0.1 (default: start `graphrec serve` here)."),
        max_seconds: float = typer.Option(600.0, "--max-seconds", min=1.0, help="Stop sending after this long."),
        out: Path = typer.Option(Path("benchmarks/results/feedback-concurrent.json"), "--out", help="JSON record."),
    ) -> None:
        """Concurrent feedback writers: non-2xx count, writes/s, latency, and every write counted in the graph (writes feedback: use a copy of the graph)."""
        from benchmarks.serve import _free_port, percentiles
        from api.cli.common import connection_info
        from graph.connection import open_driver, read
        from graphrec.settings import get_settings

        if url and (urlparse(url).hostname or "") not in LOOPBACK:
            raise typer.BadParameter("--url must be an API on this machine's loopback (127.0.0.1)")
        settings = get_settings()
        ds = dataset or settings.dataset
        info = connection_info(settings)
        run = f"bench{int(time.time())}"
        with open_driver(info, verify=True) as driver:
            state0 = read(driver, Q_STATE, {"ds": ds}, info.database)
            if not state0:
                raise typer.BadParameter(f"dataset {ds!r} is not loaded")
            users = [r["id"] for r in read(driver, Q_USERS, {"ds": ds}, info.database)]
            items = [(r["id"], int(r["n"])) for r in read(driver, Q_ITEMS, {"ds": ds}, info.database)]
            if not users or not items:
                raise typer.BadParameter(f"dataset {ds!r} has no users or no rated items")
            max_ts = read(driver, Q_MAX_TS, {}, info.database)[0]["ts"]
            lists, expected, fresh = plan_writes(users, items, writes=writes, writers=writers, new_users=new_users, seed=seed,
                                                 run=run, ts0=max(int(time.time()), int(max_ts or 0) + 1))
            if url:
                warm_s = wait_until_warm(url, 300.0)
                load_before = list(os.getloadavg())
                samples, wall, unsent = send_all(url, lists, max_seconds)
            else:
                from api.cli.background_api import background_api

                env = {**os.environ, "GRAPHREC_DATASET": ds}
                with background_api("127.0.0.1", _free_port(), env=env, quiet=True) as api:
                    warm_s = wait_until_warm(api.base_url, 300.0)
                    load_before = list(os.getloadavg())
                    samples, wall, unsent = send_all(api.base_url, lists, max_seconds)
            # what the graph holds afterwards
            pairs = [[u, i] for u, i in expected]
            stored = []
            for start in range(0, len(pairs), 1000):
                stored += read(driver, Q_PAIRS, {"ds": ds, "pairs": pairs[start:start + 1000]}, info.database)
            sent_new = sorted({r["user_id"] for lst in lists for r in lst if r["create_user"]})
            users_n = {r["id"]: int(r["n"]) for r in read(driver, Q_NEW_USERS, {"ds": ds, "ids": sent_new}, info.database)}
            state1 = read(driver, Q_STATE, {"ds": ds}, info.database)[0]

        ok = [s for s in samples if s["status"] == 201]
        statuses: dict[str, int] = {}
        for s in samples:
            statuses[str(s["status"])] = statuses.get(str(s["status"]), 0) + 1
        by_kind = {k: {"n": sum(1 for s in samples if s["kind"] == k), **percentiles([s["s"] for s in ok if s["kind"] == k])} for k in KINDS}
        graph_check = {
            "pairs": len(expected),
            "pairs_exactly_one_relationship": sum(1 for r in stored if r["n"] == 1),
            "pairs_duplicated": sum(1 for r in stored if r["n"] > 1),
            "pairs_missing": sum(1 for r in stored if r["n"] == 0),
            "pairs_with_newest_write": sum(1 for r in stored if r["n"] == 1 and tuple(r["values"][0]) == expected[(r["u"], r["i"])]),
            "new_users": len(sent_new),
            "new_users_exactly_one_node": sum(1 for u in sent_new if users_n.get(u) == 1),
            "replays_answered_replayed": sum(1 for s in ok if s["kind"] == "replay" and (s.get("replayed") or s.get("outdated"))),
            "new_users_created_once": sum(1 for s in ok if s.get("created_user")) == len(sent_new),
            "feedback_writes_counted": int(state1["feedback_writes"]) - int(state0[0]["feedback_writes"]),
            "co_likes": state1["tag"] is not None and state1["rels"] is not None,
            "co_like_marker_fresh": bool(state1["same_gen"]) and state1["rels"] == state1["live"] if state1["rels"] is not None else None,
        }
        results: dict[str, Any] = {
            "benchmark": "feedback-concurrent", "dataset": ds, "run": run, "url": url or "started here (127.0.0.1)", "seed": seed,
            "writers": writers, "writes_planned": sum(len(x) for x in lists), "writes_sent": len(samples), "unsent_at_deadline": unsent,
            "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
            "api_warm_wait_s": warm_s, "wall_s": wall,
            "writes_per_s": len(samples) / wall if wall > 0 else float("nan"),
            "non_2xx": len(samples) - len(ok), "statuses": statuses, "latency": percentiles([s["s"] for s in samples]),
            "by_kind": by_kind, "graph": graph_check,
            "errors_sample": [s["error"] for s in samples if s["status"] != 201][:5],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        lat = results["latency"]
        typer.echo(f"bench feedback-concurrent: dataset {ds}, {writers} writers, {len(samples)} of {results['writes_planned']} writes sent "
                   f"in {wall:.1f} s ({os.cpu_count()} CPUs shared by the API, Neo4j and this client; load average before "
                   f"{load_before[0]:.1f}, after {results['load_average_after'][0]:.1f})")
        typer.echo(f"non-2xx: {results['non_2xx']} {statuses}; {results['writes_per_s']:.1f} writes/s; latency p50 {lat['p50_ms']:.1f} ms, "
                   f"p95 {lat['p95_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
        for k in KINDS:
            m = by_kind[k]
            typer.echo(f"  {k:<9} n={m['n']:>5}  p50 {m['p50_ms']:>7.1f} ms  p99 {m['p99_ms']:>7.1f} ms")
        g = graph_check
        typer.echo(f"graph: {g['pairs_exactly_one_relationship']} of {g['pairs']} pairs with exactly one relationship "
                   f"({g['pairs_with_newest_write']} holding their newest write, {g['pairs_duplicated']} duplicated, {g['pairs_missing']} missing); "
                   f"{g['new_users_exactly_one_node']} of {g['new_users']} new users with exactly one node; "
                   f"{g['replays_answered_replayed']} of {by_kind['replay']['n']} replays wrote nothing; co-like marker fresh: {g['co_like_marker_fresh']}")
        typer.echo(f"record: {out}")
