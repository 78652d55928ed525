"""Unit tests of the schema statements, write batching and generation bookkeeping (no Neo4j)."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pandas as pd
import pytest

from graph.datasets import DatasetInfo, lease_is_stale
from graph.schema import DATA_LABELS, check_label, check_rel_type, schema_statements
from graph.stats import dataset_counts_query
from graph.writes import attribute_links, attribute_rels_query, build_phases, grouped_by_user
from graphrec.frames import DatasetFrames, normalise_interactions, normalise_items


def test_schema_statements_are_idempotent_and_quoted() -> None:
    stmts = schema_statements()
    assert all("IF NOT EXISTS" in s for s in stmts)
    assert len(stmts) == 1 + 2 * len(DATA_LABELS)
    assert any("REQUIRE (n.dataset, n.gen, n.`id`) IS UNIQUE" in s and "(n:`User`)" in s for s in stmts)
    assert any("REQUIRE (n.dataset, n.gen, n.`name`) IS UNIQUE" in s and "(n:`Genre`)" in s for s in stmts)


@pytest.mark.parametrize("bad", ["User) DETACH DELETE n //", "Movie", "user"])
def test_names_outside_the_allow_list_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_label(bad)
    with pytest.raises(ValueError):
        check_rel_type(bad)
    with pytest.raises(ValueError):
        attribute_rels_query(bad, "HAS_GENRE", "create")


def _frame(users: list[str], items: list[str]) -> pd.DataFrame:
    n = len(users)
    return normalise_interactions(pd.DataFrame({"user_id": users, "item_id": items, "rating": np.arange(n, dtype=float), "split": ["train"] * n}))


def test_grouped_by_user_sorts_groups_and_chunks() -> None:
    inter = _frame(["b", "a", "b", "a", "c", "b"], ["1", "2", "3", "4", "5", "6"])
    cols = {"r": inter["rating"], "t": inter["timestamp"], "s": inter["split"]}
    chunks = list(grouped_by_user(inter, cols, size=2))
    assert [n for _, n in chunks] == [2, 2, 2]
    rows = [row for batch, _ in chunks for row in batch]
    flat = [(row["u"], i, r) for row in rows for i, r in zip(row["i"], row["r"])]
    assert sorted(flat) == sorted(zip(inter["user_id"], inter["item_id"], inter["rating"]))
    assert [row["u"] for row in rows] == ["b", "b", "a", "a", "c"]  # first-seen order; users split at batch edges
    assert all("t" not in row for row in rows)  # all-null columns are not sent


def test_grouped_by_user_sends_none_for_missing_values() -> None:
    inter = normalise_interactions(pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "rating": [np.nan, 4.0], "timestamp": pd.array([5, None], dtype="Int64")}))
    (batch, n), = list(grouped_by_user(inter, {"r": inter["rating"], "t": inter["timestamp"], "s": inter["split"]}, size=10))
    assert n == 2 and batch == [{"u": "a", "i": ["1", "2"], "r": [None, 4.0], "t": [5, None]}]


def _frames() -> DatasetFrames:
    items = normalise_items(pd.DataFrame({"id": ["1", "2"], "title": ["A", "B"], "year": [1999, None], "genres": [["X", "Y"], ["X"]], "tags": [["fun"], []]}))
    inter = _frame(["u", "v", "u"], ["1", "1", "2"])
    tags = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["1", "1"], "tag": ["Fun", "fun "], "timestamp": pd.array([1, 2], dtype="Int64")})
    return DatasetFrames(name="t", source="test", users=pd.DataFrame({"id": ["u", "v"]}), items=items, interactions=inter, tag_applications=tags)


def test_attribute_links_count_tag_applications() -> None:
    frames = _frames()
    genres = attribute_links(frames, "genres")
    assert sorted(zip(genres["i"], genres["v"])) == [("1", "X"), ("1", "Y"), ("2", "X")]
    assert genres["c"].isna().all()
    tags = attribute_links(frames, "tags")
    assert tags.to_dict("records") == [{"i": "1", "v": "fun", "c": 2}]


def test_build_phases_order_and_totals() -> None:
    phases = build_phases(_frames(), "create", batch_size=10)
    assert [p.name for p in phases] == ["users", "items", "genre nodes", "tag nodes", "HAS_GENRE", "HAS_TAG", "interactions", "tag applications"]
    assert [p.total for p in phases] == [2, 2, 2, 1, 3, 1, 3, 2]
    items_rows = next(iter(phases[1].batches()))[0]
    assert items_rows[1] == {"id": "2", "title": "B", "year": None, "text": ""}
    merge = build_phases(_frames(), "merge", batch_size=10)
    assert all(" CREATE (" not in p.query for p in merge)
    assert all("MERGE" not in p.query for p in phases)
    assert all(p.query.startswith("UNWIND $rows AS") for p in phases + merge)


def test_count_query_only_names_existing_types() -> None:
    q = dataset_counts_query({"User", "Item"}, {"INTERACTED"})
    assert "sum(0) AS `HAS_BRAND`" in q and "-[:`HAS_BRAND`]" not in q
    assert "(n)-[:`INTERACTED`]->()" in q and "(n)-[:`TAGGED`]" not in q
    assert "MATCH (n:`Genre`" not in q


def _info(**kw: object) -> DatasetInfo:
    return DatasetInfo(name="d", loading_gen=2, loading_host=socket.gethostname(), **kw)  # type: ignore[arg-type]


def test_lease_staleness() -> None:
    assert not lease_is_stale(DatasetInfo(name="d"))
    assert lease_is_stale(_info(loading_pid=2**22 + 12345))  # no such process on this host
    assert not lease_is_stale(_info(loading_pid=os.getppid()))  # a live process
    remote = DatasetInfo(name="d", loading_gen=2, loading_host="elsewhere", loading_pid=1, loading_heartbeat=time.time())
    assert not lease_is_stale(remote)
    assert lease_is_stale(remote.model_copy(update={"loading_heartbeat": time.time() - 3600}))
