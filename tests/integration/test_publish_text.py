"""Publishing against the real Neo4j: only items with a text or a title get text vectors.

An item with neither has no description: its id is not encoded as if it were one (that made every
such pair "close" and produced false semantic reasons on Gowalla, which has no item text).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph.connection import read, write
from graph.embeddings import publish
from graph.explain import explain
from graph.recommend_fixtures import load_toy_graph, random_embeddings

Q_STRIP = """
MATCH (i:Item {dataset: $dataset}) WHERE i.id IN $ids
SET i.title = null, i.text = null
"""


def test_items_without_text_get_no_text_vector(neo4j_driver: Any, neo4j_info: Any) -> None:
    db, ds = neo4j_info.database, "toy-textless"
    g = load_toy_graph(neo4j_driver, ds, n_users=20, n_items=40, per_user=10, seed=4, database=db)
    item_ids = [i["id"] for i in g["items"]]
    textless = ["i0", "i1", "i2", "i39"]  # i39 is also unknown to the model (a cold item): no text, no vector
    write(neo4j_driver, Q_STRIP, {"dataset": ds, "ids": textless}, db)
    emb = random_embeddings(g["users"], item_ids[:-1], dim=6, seed=2, version="textless-v1")
    encoded: list[str] = []
    cold_texts: list[str] = []

    def text_vectors(ids: list[str], texts: list[str]) -> np.ndarray:
        assert all(isinstance(t, str) and t for t in texts)
        encoded.extend(ids)
        return np.random.default_rng(1).normal(size=(len(ids), 5))

    def cold_vectors(texts: list[str]) -> np.ndarray:
        cold_texts.extend(texts)
        return np.zeros((len(texts), 6))

    report = publish(neo4j_driver, emb, ds, database=db, text_vectors=text_vectors, cold_item_vectors=cold_vectors, grace_s=0)
    assert sorted(encoded) == sorted(set(item_ids[:-1]) - set(textless))
    assert report.text_vectors == len(encoded) and report.cold_items == 0 and cold_texts == []
    assert report.items_without_vector == 1
    prop = report.model.text_prop
    rows = read(neo4j_driver, f"MATCH (i:Item {{dataset: $ds}}) WHERE i.`{prop}` IS NOT NULL RETURN collect(i.id) AS ids", {"ds": ds}, db)
    assert sorted(rows[0]["ids"]) == sorted(encoded)
    # no semantic reason names a textless item, as the recommended item or as its anchor
    exps = explain(neo4j_driver, item_ids[:20], dataset=ds, user_id="u3", max_reasons=4, database=db)
    semantic = [(item, r) for item, e in exps.items() for r in e.reasons if r.kind == "semantic"]
    assert semantic, "the items with text still get semantic reasons"
    assert all(item not in textless and r.anchor_item_id not in textless for item, r in semantic)


def test_dataset_without_any_text_publishes_without_text_vectors(neo4j_driver: Any, neo4j_info: Any) -> None:
    db, ds = neo4j_info.database, "toy-notext"
    g = load_toy_graph(neo4j_driver, ds, n_users=10, n_items=15, per_user=5, seed=5, database=db)
    item_ids = [i["id"] for i in g["items"]]
    write(neo4j_driver, Q_STRIP, {"dataset": ds, "ids": item_ids}, db)
    emb = random_embeddings(g["users"], item_ids, dim=4, seed=3, version="notext-v1")
    called: list[int] = []
    report = publish(neo4j_driver, emb, ds, database=db, grace_s=0,
                     text_vectors=lambda ids, texts: called.append(len(ids)) or np.zeros((len(ids), 3)))
    assert called == [] and report.text_vectors == 0 and report.model.text_prop is None
    exps = explain(neo4j_driver, item_ids[:5], dataset=ds, user_id="u1", max_reasons=4, database=db)
    assert all(r.kind != "semantic" for e in exps.values() for r in e.reasons)


def test_optional_properties_log_no_warnings(neo4j_driver: Any, neo4j_info: Any, caplog: Any) -> None:
    """Queries read optional properties (no ratings on check-in data): the driver must not warn about them."""
    import logging

    with caplog.at_level(logging.DEBUG, logger="neo4j"):
        rows = read(neo4j_driver, "MATCH (i:Item) WHERE i.graphrec_no_such_property IS NOT NULL RETURN count(i) AS c", {},
                    neo4j_info.database)
    assert rows[0]["c"] == 0
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and "does not exist" in r.getMessage()]
    assert warned == []
