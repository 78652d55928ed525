"""A replace reload keeps the feedback written through the API and keeps the active model answering."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graph.connection import read, write
from graph.datasets import active_generation, drop_dataset
from graph.embeddings import active_model, publish
from graph.load import LoadOptions, load_frames
from graph.feedback import Interaction, record_interaction
from graph.recommend import Filters, recommend
from graph.recommend_fixtures import random_embeddings
from loaders.csvfile import read_csv_dataset
from tests.integration.loaders_data import write_csv_dataset

FEEDBACK = (
    "MATCH (d:Dataset {name: $dataset}) MATCH (u:User {dataset: d.name, gen: d.gen})-[r:INTERACTED]->(i:Item) "
    "WHERE r.source = 'feedback' RETURN u.id AS u, i.id AS i, r.rating AS rating ORDER BY u, i"
)


def _frames(folder: Path, name: str, **kw: Any) -> Any:
    paths = write_csv_dataset(folder, **kw)
    return read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name=name)


@pytest.fixture
def dataset(neo4j_driver: Any, neo4j_info: Any, request: pytest.FixtureRequest) -> Any:
    name = f"it-carry-{request.node.name[5:25]}"
    drop_dataset(neo4j_driver, name, neo4j_info.database)
    yield name
    drop_dataset(neo4j_driver, name, neo4j_info.database)
    write(neo4j_driver, "MATCH (m:ActiveModel {dataset: $d}) DETACH DELETE m", {"d": name}, neo4j_info.database)


def _feedback(driver: Any, name: str, db: str, user: str, item: str, rating: float, create: bool = False) -> None:
    record_interaction(driver, Interaction(user_id=user, item_id=item, rating=rating, ts=2_000_000, create_user=create),
                       dataset=name, database=db)


def _unseen(frames: Sequence[Any], user: str, items: range) -> str:
    """An item in ``items`` that ``user`` has no loaded interaction with in any of ``frames``."""
    seen = {i for f in frames for i in f.interactions.loc[f.interactions["user_id"] == user, "item_id"]}
    return next(f"i{i}" for i in items if f"i{i}" not in seen)


def test_replace_carries_feedback_and_reports_the_rest(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any, dataset: str) -> None:
    db = neo4j_info.database
    old = _frames(tmp_path / "a", dataset, n_users=15, n_items=25, per_user=6, seed=1)
    new = _frames(tmp_path / "b", dataset, n_users=12, n_items=20, per_user=6, seed=2)  # i20..i24 and u12..u14 gone
    load_frames(neo4j_driver, old, LoadOptions(mode="replace", progress=False, database=db))
    kept, gone_item, gone_user, late_item = (_unseen((old, new), "u1", range(20)), _unseen((old,), "u2", range(20, 25)),
                                             _unseen((old,), "u13", range(20)), _unseen((old, new), "u4", range(20)))
    _feedback(neo4j_driver, dataset, db, "u1", kept, 5.0)
    _feedback(neo4j_driver, dataset, db, "fb-new", "i2", 4.0, create=True)  # user created through feedback: created again
    _feedback(neo4j_driver, dataset, db, "u2", gone_item, 3.0)
    _feedback(neo4j_driver, dataset, db, "u13", gone_user, 4.5)
    late: list[int] = []

    def during(phase: str, batch: int) -> None:  # between the copy and the flip: must not be lost
        if phase == "carry" and not late:
            _feedback(neo4j_driver, dataset, db, "u4", late_item, 2.5)
            late.append(1)

    s = load_frames(neo4j_driver, new, LoadOptions(mode="replace", progress=False, database=db, flip_grace_s=0.1), on_batch=during)
    assert s.feedback is not None
    assert s.feedback.found == 4
    assert (s.feedback.carried, s.feedback.already_present, s.feedback.carried_late, s.feedback.users_created) == (2, 0, 1, 1)
    assert s.feedback.not_carried == {"item removed": 1, "user removed": 1}
    assert {(e.user_id, e.item_id, e.reason) for e in s.feedback.examples} == {("u2", gone_item, "item removed"),
                                                                                ("u13", gone_user, "user removed")}
    rows = {(r["u"], r["i"]): r["rating"] for r in read(neo4j_driver, FEEDBACK, {"dataset": dataset}, db)}
    assert rows == {("u1", kept): 5.0, ("fb-new", "i2"): 4.0, ("u4", late_item): 2.5}
    assert "feedback: 4 found" in s.table()

    # on purpose: nothing carried, the count reported
    s2 = load_frames(neo4j_driver, new, LoadOptions(mode="replace", progress=False, database=db, carry_feedback=False))
    assert s2.feedback is not None and s2.feedback.dropped == 3 and s2.feedback.carried == 0
    assert read(neo4j_driver, FEEDBACK, {"dataset": dataset}, db) == []


def test_replace_keeps_the_model_answering(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any, dataset: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import graph.reload

    monkeypatch.setattr(graph.reload, "REL_BATCH", 2)  # the relationship copy in several transactions
    db = neo4j_info.database
    load_frames(neo4j_driver, _frames(tmp_path / "a", dataset, n_users=15, n_items=25, per_user=6, seed=1),
                LoadOptions(mode="replace", progress=False, database=db))
    users = [f"u{u}" for u in range(15)]
    emb = random_embeddings(users, [f"i{i}" for i in range(25)], dim=8, seed=3, version="carry-v1")
    publish(neo4j_driver, emb, dataset, database=db, grace_s=0.1)
    m = active_model(neo4j_driver, dataset, db)
    assert m is not None and m.gen == active_generation(neo4j_driver, dataset, db)
    pairs = [("i0", "i1", 0.5), ("i0", "i2", 0.25), ("i1", "i2", 0.125), ("i3", "i20", 0.75), ("i5", "i6", 1.0), ("i7", "i0", 0.0625)]
    write(neo4j_driver, "UNWIND $pairs AS p MATCH (a:Item {dataset: $d, id: p[0]}), (b:Item {dataset: $d, id: p[1]}) "
                        "CREATE (a)-[:NEIGHBOUR {tag: $tag, w: p[2]}]->(b)", {"d": dataset, "tag": m.tag, "pairs": pairs}, db)
    before = {u: [i.item_id for i in recommend(neo4j_driver, u, 5, Filters(exclude_seen=False), dataset=dataset, database=db).items]
              for u in ("u0", "u3")}

    errors: list[BaseException] = []
    answers: list[list[str]] = []
    stop = threading.Event()

    def probe() -> None:
        rng = np.random.default_rng(0)
        while not stop.is_set():
            u = f"u{int(rng.integers(0, 12))}"  # users in both generations
            try:
                answers.append([i.item_id for i in recommend(neo4j_driver, u, 5, dataset=dataset, database=db).items])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
            stop.wait(0.02)

    # new data: items i20..i24 removed, i25..i29 new (with text), users u12..u14 removed
    new = _frames(tmp_path / "b", dataset, n_users=12, n_items=30, per_user=6, seed=1)
    new.items = new.items[~new.items["id"].isin([f"i{i}" for i in range(20, 25)])].reset_index(drop=True)
    new.interactions = new.interactions[new.interactions["item_id"].isin(new.items["id"])].reset_index(drop=True)
    asked: list[list[str]] = []

    def cold(ids: list[str], texts: list[str]) -> tuple[np.ndarray, None]:
        asked.append(ids)
        return np.random.default_rng(9).normal(size=(len(ids), 8)), None

    t = threading.Thread(target=probe)
    t.start()
    try:
        while not answers and not errors:
            stop.wait(0.05)
        s = load_frames(neo4j_driver, new, LoadOptions(mode="replace", progress=False, database=db, flip_grace_s=0.1), new_item_vectors=cold)
        n_before = len(answers)
        while len(answers) < n_before + 3 and not errors:
            stop.wait(0.05)
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors[:3]
    assert s.model is not None and s.model.tag == m.tag
    assert s.model.items_kept == 20 and s.model.users_kept == 12 and s.model.relationships == 5  # i3 -> i20: i20 removed
    assert sorted(asked[0]) == sorted(f"i{i}" for i in range(25, 30)) and s.model.cold_items == 5
    assert s.model.items_without_vector == 0
    gen = active_generation(neo4j_driver, dataset, db)
    m2 = active_model(neo4j_driver, dataset, db)
    assert m2 is not None and m2.tag == m.tag and m2.gen == gen
    removed = {f"i{i}" for i in range(20, 25)}
    for u in ("u0", "u3"):
        after = [i.item_id for i in recommend(neo4j_driver, u, 5, Filters(exclude_seen=False), dataset=dataset, database=db).items]
        assert len(after) == 5 and not removed & set(after)
        kept_before = [i for i in before[u] if i not in removed]
        assert [i for i in after if i in kept_before] == kept_before  # same vectors: same order of the kept items
    rel = read(neo4j_driver, "MATCH (a:Item {dataset: $d, gen: $g})-[r:NEIGHBOUR {tag: $t}]->(b:Item) RETURN a.id AS a, b.id AS b, r.w AS w",
               {"d": dataset, "g": gen, "t": m.tag}, db)
    assert sorted((r["a"], r["b"], r["w"]) for r in rel) == sorted(p for p in pairs if p[1] != "i20")
    assert not any(removed & set(a) for a in answers[-3:])
