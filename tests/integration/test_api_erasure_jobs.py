"""Against the real Neo4j: user erasure end to end (graph, answers, explanations, export, CLI) and the job store across API restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from graph.co_likes import build_co_likes
from graph.connection import read, write
from graph.embeddings import publish
from graph.export import read_generation
from graph.jobs_store import JobRecord, JobStore
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graphrec.clock import utc_now_iso
from graphrec.settings import Settings

DS = "toy-erasure"
TOKEN = "integration-erasure-token-0123456789-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Q_PAIRS = """
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (a:Item {dataset: $dataset})-[c:CO_LIKED]->(b:Item) WHERE c.tag = m.tag
RETURN a.id AS a, b.id AS b, c.count AS count, c.witnesses AS witnesses, a.co_likers AS la, b.co_likers AS lb,
       COUNT { MATCH (a)<-[r1:INTERACTED]-(v:User)-[r2:INTERACTED]->(b)
               WHERE (r1.rating IS NULL OR r1.rating >= 4.0) AND (r2.rating IS NULL OR r2.rating >= 4.0) RETURN DISTINCT v } AS live,
       COUNT { MATCH (a)<-[r:INTERACTED]-(v:User) WHERE r.rating IS NULL OR r.rating >= 4.0 RETURN DISTINCT v } AS live_la
"""


def make_app(info: Any) -> Any:
    return create_app(Settings(dataset=DS, admin_token=TOKEN, preload_text_model=False), info, startup_wait_s=10)


@pytest.fixture(scope="module")
def graph(neo4j_driver: Any, neo4j_info: Any) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=30, n_items=40, per_user=12, seed=11, database=db)
    publish(neo4j_driver, random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=3, version="erase-v1"),
            DS, database=db, grace_s=0)
    build_co_likes(neo4j_driver, DS, database=db, min_count=1)
    yield neo4j_driver, neo4j_info, g


def _likers(g: dict[str, Any]) -> dict[str, int]:
    """How many items each user likes (rating >= 4)."""
    out: dict[str, int] = {}
    for r in g["interactions"]:
        if r["r"] >= 4.0:
            out[r["u"]] = out.get(r["u"], 0) + 1
    return out


def test_erasure_end_to_end(graph: tuple[Any, Any, dict[str, Any]]) -> None:
    driver, info, g = graph
    db = info.database
    likes = _likers(g)
    victim = max(likes, key=lambda u: likes[u])  # the user with the most likes: the most co-like pairs to correct
    # the user also exists in an older generation (a leftover a reload has not cleaned yet)
    write(driver, "MATCH (i:Item {dataset: $ds, gen: 1, id: 'i1'}) "
                  "MERGE (u:User {dataset: $ds, gen: 0, id: $id}) MERGE (i0:Item {dataset: $ds, gen: 0, id: 'i1'}) "
                  "MERGE (u)-[:INTERACTED {rating: 5.0}]->(i0)", {"ds": DS, "id": victim}, db)
    before = read(driver, Q_PAIRS, {"dataset": DS}, db)
    assert any(victim in (r["witnesses"] or []) for r in before)  # the co-likes name the user before

    with TestClient(make_app(info)) as c:
        assert c.get(f"/v1/users/{victim}/recommendations", params={"k": 3}).status_code == 200
        fb = c.post("/v1/interactions", json={"user_id": victim, "item_id": "i2", "rating": 5.0})  # feedback, erased too
        assert fb.status_code == 201
        r = c.delete(f"/v1/admin/users/{victim}", headers=AUTH)
        assert r.status_code == 200, r.text
        report = r.json()
        assert sorted(report["generations"]) == [0, 1] and report["interactions"] >= 12 and report["witness_lists"] > 0

        # the graph: no node in any generation, co-like counts, liker counts and witnesses exact again
        assert read(driver, "MATCH (u:User {dataset: $ds}) WHERE u.id = $id RETURN count(u) AS n", {"ds": DS, "id": victim}, db)[0]["n"] == 0
        after = read(driver, Q_PAIRS, {"dataset": DS}, db)
        assert after
        for row in after:
            assert victim not in (row["witnesses"] or [])
            assert row["count"] == row["live"], row
            assert row["la"] is None or row["la"] == row["live_la"], row

        # the answers: 404 for the user, nobody's explanation names them
        gone = c.get(f"/v1/users/{victim}/recommendations")
        assert gone.status_code == 404 and gone.json()["code"] == "unknown_user"
        assert c.delete(f"/v1/admin/users/{victim}", headers=AUTH).status_code == 404
        for u in g["users"]:
            if u == victim:
                continue
            recs = c.get(f"/v1/users/{u}/recommendations", params={"k": 10, "explain": "true", "reasons": 4})
            assert recs.status_code == 200, recs.text
            assert f'"{victim}"' not in recs.text
        cs = c.post("/v1/recommendations", json={"liked_item_ids": ["i0", "i1"], "k": 5, "explain": True})
        assert cs.status_code == 200 and f'"{victim}"' not in cs.text

    # the next snapshot export (so the next fit) does not see them
    users, _, inter = read_generation(driver, DS, 1, db)
    assert victim not in set(users["id"]) and victim not in set(inter["user_id"])


def test_forget_user_cli(graph: tuple[Any, Any, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli.main import main
    from graphrec.settings import get_settings

    driver, info, g = graph
    victim = g["users"][-1]
    monkeypatch.setenv("NEO4J_URI", info.uri)
    monkeypatch.setenv("NEO4J_USER", info.user)
    monkeypatch.setenv("NEO4J_PASSWORD", info.password)
    monkeypatch.setenv("NEO4J_DATABASE", info.database)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as done:
            main(["forget-user", victim, "--dataset", DS, "--json"])
        assert done.value.code in (0, None)
        assert f'"user_id": "{victim}"' in capsys.readouterr().out
        with pytest.raises(SystemExit) as again:
            main(["forget-user", victim, "--dataset", DS])
        assert again.value.code == 9  # NotFoundError's exit code
    finally:
        get_settings.cache_clear()
    assert read(driver, "MATCH (u:User {dataset: $ds}) WHERE u.id = $id RETURN count(u) AS n", {"ds": DS, "id": victim},
                info.database)[0]["n"] == 0


def test_jobs_survive_an_api_restart(graph: tuple[Any, Any, dict[str, Any]]) -> None:
    driver, info, _ = graph
    db = info.database
    # a job a dead API process left running
    store = JobStore(driver, db, dataset=DS)
    dead = JobRecord(id="deadbeef0001", kind="reload", state="running", steps=2, step=1, created_at=utc_now_iso(),
                     commands=[["graphrec", "load", "movielens"]], messages=["$ graphrec load movielens"],
                     owner="a-process-that-died", heartbeat=time.time() - 3600)
    store.save(dead)

    with TestClient(make_app(info)) as c:
        r = c.post("/v1/admin/train", json={"epochs": 1, "publish": False, "extra_args": ["--no-such-option"]}, headers=AUTH)
        assert r.status_code == 202
        job_id = r.json()["id"]
        deadline = time.monotonic() + 180
        job = r.json()
        while time.monotonic() < deadline and job["state"] in ("queued", "running"):
            time.sleep(0.5)
            job = c.get(f"/v1/admin/jobs/{job_id}", headers=AUTH).json()
        assert job["state"] == "failed" and job["returncode"] not in (None, 0) and job["error"], job
        assert job["steps"] == 2 and job["progress"] == 0.5 and job["messages"]  # the export step finished
        restarted_dead = c.get("/v1/admin/jobs/deadbeef0001", headers=AUTH).json()
        assert restarted_dead["state"] == "interrupted"

    # a new API process on the same Neo4j: the jobs are still there, as they were
    with TestClient(make_app(info)) as c:
        listed = c.get("/v1/admin/jobs", headers=AUTH)
        assert listed.status_code == 200
        by_id = {j["id"]: j for j in listed.json()["jobs"]}
        assert by_id[job_id]["state"] == "failed" and by_id[job_id]["messages"] == job["messages"]
        assert by_id["deadbeef0001"]["state"] == "interrupted"
        assert {j["dataset"] for j in listed.json()["jobs"]} == {DS}  # other datasets' jobs are not listed
        assert c.get("/v1/admin/jobs", params={"state": "interrupted"}, headers=AUTH).json()["jobs"][0]["id"] == "deadbeef0001"
    stored = read(driver, "MATCH (j:Job {id: 'deadbeef0001'}) RETURN j.state AS s", {}, db)
    assert stored[0]["s"] == "interrupted"  # written back at start-up, not only shown
