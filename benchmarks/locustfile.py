"""Mixed load for locust: 80% explained recommendations, 10% similar items, 10% feedback.

Each simulated user sends one request a second (``constant_throughput(1)``), so ``--users 100`` aims at
100 requests a second. The ids come from the files named by ``GRAPHREC_LOAD_USERS`` and
``GRAPHREC_LOAD_ITEMS`` (one id a line; ``benchmarks/mixed_load.py`` writes them from the graph).
Only 127.0.0.1 is accepted as the host. Run it through ``benchmarks/mixed_load.py``, which starts the
API, runs locust headless for a fixed time and writes the JSON result.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from urllib.parse import urlparse

from locust import HttpUser, constant_throughput, events, task


def _ids(var: str) -> list[str]:
    path = os.environ.get(var)
    if not path:
        raise SystemExit(f"{var} must name a file of ids (benchmarks/mixed_load.py writes it)")
    ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        raise SystemExit(f"{path} has no ids")
    return ids


USERS = _ids("GRAPHREC_LOAD_USERS")
ITEMS = _ids("GRAPHREC_LOAD_ITEMS")


@events.test_start.add_listener
def _only_loopback(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    host = urlparse(environment.host or "").hostname
    if host != "127.0.0.1":
        raise SystemExit(f"this load test only talks to 127.0.0.1, not {host!r}")


class ApiUser(HttpUser):
    """One client: a request a second, in the 80/10/10 mix."""

    wait_time = constant_throughput(1)

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
