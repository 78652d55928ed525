"""Model switches are atomic for readers: every answer during a publish comes from one model version,
and the previous version's index and properties are gone afterwards."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from graph.connection import read
from graph.embeddings import active_model, publish
from graph.recommend import Filters, recommend
from graph.recommend_fixtures import load_toy_graph, random_embeddings

DS = "toy-switch"


def test_readers_never_see_a_mix_during_a_switch(neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=20, n_items=120, per_user=8, seed=1, database=db)
    items = [i["id"] for i in g["items"]]
    versions = {
        "switch-v1": random_embeddings(g["users"], items, dim=8, seed=21, version="switch-v1"),
        "switch-v2": random_embeddings(g["users"], items, dim=8, seed=22, version="switch-v2"),
    }
    publish(neo4j_driver, versions["switch-v1"], DS, database=db, grace_s=0.5)
    old = active_model(neo4j_driver, DS, db)
    assert old is not None

    def top(version: str, user: str, k: int = 5) -> list[str]:
        e = versions[version]
        u = e.user_vectors[e.user_ids.index(user)]
        order = np.argsort(-(e.item_vectors @ u))[:k]
        return [e.item_ids[j] for j in order]

    seen: list[tuple[str, str, list[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(user: str) -> None:
        while not stop.is_set():
            try:
                r = recommend(neo4j_driver, user, 5, Filters(exclude_seen=False), dataset=DS, database=db)
                seen.append((r.model_version, user, [i.item_id for i in r.items]))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=reader, args=(u,)) for u in ("u0", "u5", "u9")]
    for t in threads:
        t.start()
    try:
        # Readers must be answering from v1 before the switch starts (on a busy machine the first
        # queries can take longer than publishing a graph this small).
        deadline = time.monotonic() + 60
        while sum(1 for v, _, _ in seen if v == "switch-v1") < 3 and not errors and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        publish(neo4j_driver, versions["switch-v2"], DS, database=db, grace_s=0.5)
        while sum(1 for v, _, _ in seen if v == "switch-v2") < 6 and not errors:
            threading.Event().wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    got = {v for v, _, _ in seen}
    assert got == {"switch-v1", "switch-v2"}
    for version, user, ids in seen:
        assert ids == top(version, user), (version, user)  # the ranking of exactly that version
    # the previous publication is gone: index dropped, properties removed
    idx = read(neo4j_driver, "SHOW INDEXES YIELD name WHERE name = $n RETURN name", {"n": old.item_index}, db)
    assert idx == []
    left = read(neo4j_driver, f"MATCH (n) WHERE n.dataset = $ds AND n.`{old.item_prop}` IS NOT NULL RETURN count(n) AS c", {"ds": DS}, db)
    assert left[0]["c"] == 0
