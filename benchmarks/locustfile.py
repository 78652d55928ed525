"""Mixed load for locust: 80% explained recommendations, 10% similar items, 10% feedback.

Each simulated user sends one request a second on average, so ``--users 100`` aims at 100 requests a
second. By default the requests arrive as a Poisson process (each user draws exponential gaps on its own
schedule, see :func:`poisson_arrivals`), the usual model of independent clients. With
``GRAPHREC_LOAD_ARRIVALS=synchronized`` every user waits with ``constant_throughput(1)`` instead: the
users spawned together then fire together, once a second, which measures bursts of ``--users``
simultaneous requests rather than a steady rate. The ids come from the files named by ``GRAPHREC_LOAD_USERS`` and
``GRAPHREC_LOAD_ITEMS`` (one id a line; ``benchmarks/mixed_load.py`` writes them from the graph).
Only 127.0.0.1 is accepted as the host. Run it through ``benchmarks/mixed_load.py``, which starts the
API, runs locust headless for a fixed time and writes the JSON result.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from urllib.parse import urlparse

from locust import FastHttpUser, constant_throughput, events, task


def _ids(var: str) -> list[str]:
    path = os.environ.get(var)
    if not path:
        raise SystemExit(f"{var} must name a file of ids (benchmarks/mixed_load.py writes it)")
    ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        raise SystemExit(f"{path} has no ids")
    return ids


def poisson_arrivals(rate: float):  # type: ignore[no-untyped-def]
    """A locust ``wait_time``: requests at the times of a Poisson process of ``rate`` per second, per user.

    Each user keeps its own schedule: the next start is the previous scheduled start plus an
    exponential gap, whatever the response time was (an open-loop arrival process). A user whose
    responses fall behind the schedule sends the next request at once.
    """

    def wait(user) -> float:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        nxt = getattr(user, "_next_arrival", None)
        nxt = (now if nxt is None else max(nxt, now - 1.0 / rate)) + random.expovariate(rate)
        user._next_arrival = nxt
        return max(0.0, nxt - now)

    return wait


ARRIVALS = os.environ.get("GRAPHREC_LOAD_ARRIVALS", "poisson")
if ARRIVALS not in ("poisson", "synchronized"):
    raise SystemExit(f"GRAPHREC_LOAD_ARRIVALS must be 'poisson' or 'synchronized', not {ARRIVALS!r}")

USERS = _ids("GRAPHREC_LOAD_USERS")
ITEMS = _ids("GRAPHREC_LOAD_ITEMS")


@events.test_start.add_listener
def _only_loopback(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    host = urlparse(environment.host or "").hostname
    if host != "127.0.0.1":
        raise SystemExit(f"this load test only talks to 127.0.0.1, not {host!r}")


class ApiUser(FastHttpUser):
    """One client: a request a second on average, in the 80/10/10 mix.

    ``FastHttpUser`` (geventhttpclient) costs the load generator a fraction of the CPU of the
    ``requests``-based ``HttpUser``; the load tool shares the cores with the API and Neo4j.
    """

    wait_time = poisson_arrivals(1.0) if ARRIVALS == "poisson" else constant_throughput(1)

    @task(8)
    def explained_recommendations(self) -> None:
        user = random.choice(USERS)
        self.client.get(f"/v1/users/{user}/recommendations", params={"k": 10, "explain": "true"},
                        name="GET /v1/users/{user_id}/recommendations?explain=true")

    @task(1)
    def similar_items(self) -> None:
        item = random.choice(ITEMS)
        self.client.get(f"/v1/items/{item}/similar", params={"k": 10}, name="GET /v1/items/{item_id}/similar")

    @task(1)
    def feedback(self) -> None:
        body = {"user_id": random.choice(USERS), "item_id": random.choice(ITEMS), "rating": float(random.randint(1, 10)) / 2}
        self.client.post("/v1/interactions", json=body, name="POST /v1/interactions")
