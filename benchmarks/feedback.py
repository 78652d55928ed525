"""``graphrec bench feedback``: latency of ``POST /v1/interactions`` (feedback written into the graph,
co-likes kept exact) for the heaviest users and a random sample of the others.

For every sampled user the benchmark picks two kinds of items, both with stored co-like pairs:

* ``--unrated`` items the user has not rated (or only rated below the like threshold through earlier
  feedback, so a rerun with the same seed reuses the same items), drawn with probability proportional
  to their number of stored pairs (popular items are rated more often, and they cost the most); three
  requests each: a new like (rating 5), the same side again (4.5: no co-like count changes) and a
  rating below the threshold (2: the like is removed);
* ``--liked`` items the user liked in the loaded data (the popular ones, for heavy users), drawn
  uniformly; three requests each: lowered below the threshold (2: like removed), back to the
  original rating (like added) and the original rating again (same side), which restores the rating;
* ``--popular`` (heavy users only): the items with the most stored pairs (the most expensive ones),
  with the first cycle when the user does not like the item (ending on the user's original rating, if
  any) and the second when they do.

The API runs as a separate process (``--url`` for one already running, e.g. another checkout's);
requests go one at a time over one keep-alive connection. The graph keeps what the benchmark wrote
(each touched pair ends with rating 2, not a like): run it on a copy of the graph. With ``--verify``
(default) the stored co-likes of every touched item are recounted from the live graph afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import zlib
from typing import Any
from urllib.parse import urlparse

import typer

#: (rating, kind) sent for every chosen unrated item, in this order.
CYCLE: tuple[tuple[float, str], ...] = ((5.0, "like_added"), (4.5, "same_side"), (2.0, "like_removed"))
KINDS: tuple[str, ...] = ("like_added", "same_side", "like_removed")

# Users by their loaded interactions (what this benchmark writes does not change the order, so a rerun
# with the same seed samples the same users).
Q_USERS = """
MATCH (d:Dataset {name: $ds})
MATCH (u:User {dataset: $ds, gen: d.gen})
RETURN u.id AS id, COUNT { (u)-[r:INTERACTED]->() WHERE r.source IS NULL OR r.source <> 'feedback' } AS n
ORDER BY n DESC, id
"""

# Items with stored co-like pairs of the active model that the user has not rated, or rated below the
# threshold through feedback only (what an earlier run of this benchmark left).
Q_CANDIDATES = """
MATCH (d:Dataset {name: $ds})
MATCH (m:ActiveModel {dataset: $ds})
MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
MATCH (u:User {dataset: $ds, gen: d.gen, id: $user_id})
MATCH (i:Item {dataset: $ds, gen: d.gen})
WHERE EXISTS { (i)-[c:CO_LIKED]->() WHERE c.tag = m.tag }
  AND NOT EXISTS { (u)-[r:INTERACTED]->(i) WHERE r.source <> 'feedback' OR r.rating IS NULL OR r.rating >= cl.like }
RETURN i.id AS id, COUNT { (i)-[c:CO_LIKED]-() WHERE c.tag = m.tag } AS pairs ORDER BY id
"""

# Items the user likes in the loaded data (explicit ratings), with stored co-like pairs.
Q_LIKED = """
MATCH (d:Dataset {name: $ds})
MATCH (m:ActiveModel {dataset: $ds})
MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
MATCH (u:User {dataset: $ds, gen: d.gen, id: $user_id})-[r:INTERACTED]->(i:Item)
WHERE r.source = 'load' AND r.rating >= cl.like AND EXISTS { (i)-[c:CO_LIKED]->() WHERE c.tag = m.tag }
RETURN i.id AS id, r.rating AS rating, COUNT { (i)-[c:CO_LIKED]-() WHERE c.tag = m.tag } AS pairs ORDER BY id
"""

# The items with the most stored pairs, and the user's rating of each (if any).
Q_POPULAR = """
MATCH (d:Dataset {name: $ds})
MATCH (m:ActiveModel {dataset: $ds})
MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
MATCH (i:Item {dataset: $ds, gen: d.gen})
WITH m, cl, d, i, COUNT { (i)-[c:CO_LIKED]-() WHERE c.tag = m.tag } AS pairs
ORDER BY pairs DESC, i.id LIMIT $n
MATCH (u:User {dataset: $ds, gen: d.gen, id: $user_id})
OPTIONAL MATCH (u)-[r:INTERACTED]->(i)
RETURN i.id AS id, pairs, r IS NOT NULL AS rated, r.rating AS rating,
       r IS NOT NULL AND (r.rating IS NULL OR r.rating >= cl.like) AS liked
ORDER BY pairs DESC, id
"""

Q_MARKER = """
MATCH (d:Dataset {name: $ds})
MATCH (m:ActiveModel {dataset: $ds})
OPTIONAL MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
RETURN m.tag AS tag, cl.rels AS rels, cl.gen = d.gen AS same_gen, COUNT { ()-[:INTERACTED]->() } AS live
"""

# Every stored pair of the item (either direction) against the live graph: count, witnesses, weight.
Q_VERIFY = """
MATCH (m:ActiveModel {dataset: $ds})
MATCH (cl:CoLiked {dataset: $ds, tag: m.tag})
MATCH (d:Dataset {name: $ds})
MATCH (a:Item {dataset: $ds, gen: d.gen, id: $item_id})-[c:CO_LIKED]-(b:Item)
WHERE c.tag = m.tag
WITH cl, a, b, c,
  COLLECT { MATCH (a)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b)
            WHERE (r1.rating IS NULL OR r1.rating >= cl.like) AND (r2.rating IS NULL OR r2.rating >= cl.like) RETURN DISTINCT v.id } AS co,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(a) WHERE r.rating IS NULL OR r.rating >= cl.like RETURN DISTINCT v } AS la,
  COUNT { MATCH (v:User)-[r:INTERACTED]->(b) WHERE r.rating IS NULL OR r.rating >= cl.like RETURN DISTINCT v } AS lb
WITH c, co, CASE WHEN la * lb > 0 THEN toFloat(size(co)) / sqrt(toFloat(la * lb)) ELSE 0.0 END AS cosine
RETURN count(c) AS pairs,
       sum(CASE WHEN c.count = size(co) THEN 0 ELSE 1 END) AS bad_counts,
       sum(CASE WHEN all(w IN c.witnesses WHERE w IN co) THEN 0 ELSE 1 END) AS bad_witnesses,
       sum(CASE WHEN abs(c.weight - CASE WHEN cosine > 1.0 THEN 1.0 ELSE cosine END) <= 1e-6 THEN 0 ELSE 1 END) AS bad_weights
"""


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
    raise AssertionError("unreachable")


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench feedback`` and ``graphrec bench feedback-concurrent``."""
    from benchmarks.feedback_concurrency import register_bench as register_concurrent

    register_concurrent(bench_app)

    @bench_app.command("feedback")
    def bench_feedback(
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: GRAPHREC_DATASET)."),
        heavy: int = typer.Option(10, "--heavy", min=0, help="The N users with the most interactions."),
        light: int = typer.Option(50, "--light", min=0, help="Users sampled at random from the others."),
        unrated: int = typer.Option(3, "--unrated", min=0, help="Unrated items per user (3 requests each: like, same side, unlike)."),
        liked: int = typer.Option(3, "--liked", min=0, help="Liked items per user (3 requests each: unlike, like, same side)."),
        popular: int = typer.Option(5, "--popular", min=0, help="Heavy users: the N items with the most stored pairs."),
        seed: int = typer.Option(0, "--seed"),
        url: str | None = typer.Option(None, "--url", help="An API already running (default: start `graphrec serve` here)."),
        warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed users (light) whose requests plan the queries first."),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="Recount the touched items' co-likes from the live graph."),
        as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
    ) -> None:
        """p50/p95/p99 of POST /v1/interactions for heavy and light users (writes feedback: use a copy of the graph)."""
        from benchmarks.serve import _free_port, percentiles
        from api.cli.common import connection_info
        from graph.connection import open_driver, read
        from graphrec.settings import get_settings

        settings = get_settings()
        ds = dataset or settings.dataset
        info = connection_info(settings)
        with open_driver(info, verify=True) as driver:
            marker = read(driver, Q_MARKER, {"ds": ds}, info.database)
            if not marker or marker[0]["rels"] is None:
                raise typer.BadParameter(f"dataset {ds!r} has no published model with materialised co-likes: run `graphrec publish`")
            users = [(r["id"], int(r["n"])) for r in read(driver, Q_USERS, {"ds": ds}, info.database)]
            rng = random.Random(seed)
            heavy_users = users[:heavy]
            rest = sorted(users[heavy:])
            light_users = rng.sample(rest, min(light + warmup, len(rest)))
            warm_users, light_users = light_users[:warmup], light_users[warmup:]
            import numpy as np

            # (group, user, n ratings, item, pool, item's stored pairs, ((rating, kind), ...))
            plan: list[tuple[str, str, int, str, str, int, tuple[tuple[float, str], ...]]] = []
            for group, members in (("warmup", warm_users), ("heavy", heavy_users), ("light", light_users)):
                for uid, n in members:
                    urng = np.random.default_rng([seed, zlib.crc32(uid.encode())])
                    cands = read(driver, Q_CANDIDATES, {"ds": ds, "user_id": uid}, info.database)
                    if cands and unrated:
                        w = np.asarray([float(r["pairs"]) for r in cands])
                        pick = urng.choice(len(cands), size=min(unrated, len(cands)), replace=False, p=w / w.sum())
                        for k in sorted(int(x) for x in pick):
                            plan.append((group, uid, n, cands[k]["id"], "unrated", int(cands[k]["pairs"]), CYCLE))
                    likes = read(driver, Q_LIKED, {"ds": ds, "user_id": uid}, info.database)
                    if likes and liked:
                        for k in sorted(int(x) for x in urng.choice(len(likes), size=min(liked, len(likes)), replace=False)):
                            r0 = float(likes[k]["rating"])
                            plan.append((group, uid, n, likes[k]["id"], "liked", int(likes[k]["pairs"]),
                                         ((2.0, "like_removed"), (r0, "like_added"), (r0, "same_side"))))
                    if group == "heavy" and popular:
                        for r in read(driver, Q_POPULAR, {"ds": ds, "user_id": uid, "n": popular}, info.database):
                            if r["liked"]:
                                cycle = ((2.0, "like_removed"), (r["rating"], "like_added"), (r["rating"], "same_side"))
                            elif r["rated"]:  # below the threshold: like, same side, back to the original rating
                                cycle = ((5.0, "like_added"), (4.5, "same_side"), (r["rating"], "like_removed"))
                            else:
                                cycle = CYCLE
                            plan.append((group, uid, n, r["id"], "popular", int(r["pairs"]), cycle))

            def run(base_url: str) -> list[dict[str, Any]]:
                u = urlparse(base_url)
                host, port = u.hostname or "127.0.0.1", u.port or 80
                box: list[http.client.HTTPConnection | None] = [None]
                out = []
                for group, uid, n, item, pool, pairs, cycle in plan:
                    for rating, kind in cycle:
                        body = json.dumps({"user_id": uid, "item_id": item, "rating": rating}).encode()
                        t0 = time.perf_counter()
                        status, text = _post(box, host, port, body)
                        dt = time.perf_counter() - t0
                        if status != 201:
                            raise RuntimeError(f"POST /v1/interactions -> {status}: {text[:300]!r}")
                        out.append({"group": group, "user": uid, "n": n, "item": item, "pool": pool, "pairs": pairs, "kind": kind, "s": dt})
                if box[0] is not None:
                    box[0].close()
                return out

            t_start = time.perf_counter()
            if url:
                samples = run(url)
            else:
                from api.cli.background_api import background_api

                env = {**os.environ, "GRAPHREC_DATASET": ds}
                with background_api("127.0.0.1", _free_port(), env=env, quiet=True) as api:
                    samples = run(api.base_url)
            wall = time.perf_counter() - t_start
            after = read(driver, Q_MARKER, {"ds": ds}, info.database)[0]
            checked: dict[str, int] = {"items": 0, "pairs": 0, "bad_counts": 0, "bad_witnesses": 0, "bad_weights": 0}
            if verify:
                for item in sorted({p[3] for p in plan}):  # every stored pair of every touched item
                    r = read(driver, Q_VERIFY, {"ds": ds, "item_id": item}, info.database)
                    checked["items"] += 1
                    for k in ("pairs", "bad_counts", "bad_witnesses", "bad_weights"):
                        checked[k] += int(r[0][k]) if r else 0

        timed = [s for s in samples if s["group"] != "warmup"]
        results: dict[str, Any] = {"dataset": ds, "tag": marker[0]["tag"], "url": url, "cpu_count": os.cpu_count(), "seed": seed,
                                   "requests": len(timed), "wall_s": wall, "groups": {},
                                   "marker_fresh_after": bool(after["same_gen"]) and after["rels"] == after["live"],
                                   "verify": checked if verify else None}
        for group in ("heavy", "light"):
            g = [s for s in timed if s["group"] == group]
            if not g:
                continue
            ns = sorted({s["n"] for s in g})
            entry: dict[str, Any] = {"users": len({s["user"] for s in g}), "ratings_min": ns[0], "ratings_max": ns[-1],
                                     "all": {**percentiles([s["s"] for s in g]), "n": len(g)}}
            for kind in KINDS:
                ks = [s["s"] for s in g if s["kind"] == kind]
                entry[kind] = {**percentiles(ks), "n": len(ks)}
            for pool in ("unrated", "liked", "popular"):
                ps = [s for s in g if s["pool"] == pool]
                if ps:
                    entry[f"{pool}_items"] = {**percentiles([s["s"] for s in ps]), "n": len(ps),
                                              "median_pairs": float(np.median([s["pairs"] for s in ps]))}
            results["groups"][group] = entry
        if as_json:
            typer.echo(json.dumps(results, indent=2))
            return
        typer.echo(f"bench feedback: dataset {ds}, co-likes {results['tag']}, {len(timed)} timed POST /v1/interactions "
                   f"(one at a time, {os.cpu_count()} CPUs shared with Neo4j and the API), API {url or 'started here'}")
        typer.echo(f"{'group':<6} {'users':>5} {'ratings':>11} {'request':<13} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        for group, e in results["groups"].items():
            for kind in ("all", *KINDS, "unrated_items", "liked_items", "popular_items"):
                if kind not in e:
                    continue
                m = e[kind]
                extra = f"   (median {m['median_pairs']:.0f} stored pairs per item)" if "median_pairs" in m else ""
                typer.echo(f"{group:<6} {e['users']:>5} {e['ratings_min']:>5}-{e['ratings_max']:<5} {kind:<13} {m['n']:>4} "
                           f"{m['p50_ms']:>8.1f} {m['p95_ms']:>8.1f} {m['p99_ms']:>8.1f}{extra}")
        typer.echo(f"marker fresh afterwards: {results['marker_fresh_after']}")
        if verify:
            typer.echo(f"verify: {checked['items']} touched items, {checked['pairs']} stored pairs recounted from the live graph: "
                       f"{checked['bad_counts']} wrong counts, {checked['bad_witnesses']} wrong witnesses, {checked['bad_weights']} wrong weights")
        typer.echo(json.dumps(results))
