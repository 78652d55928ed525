"""Every endpoint against the real Neo4j: normal paths, error codes, feedback, filters, explanation paths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.refit import TRAINER
from graph.embeddings import publish
from graph.explain import Reason, verify_reason
from graph.recommend_fixtures import load_toy_graph, random_embeddings
from graphrec.settings import Settings

DS = "toy-api"
TOKEN = "integration-admin-token-0123456789"


@pytest.fixture(scope="module")
def api(neo4j_driver: Any, neo4j_info: Any) -> Iterator[tuple[TestClient, Any, str]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=25, n_items=60, per_user=10, seed=8, database=db)
    emb = random_embeddings(g["users"], [i["id"] for i in g["items"]], dim=8, seed=4, version="api-v1")
    publish(neo4j_driver, emb, DS, database=db, grace_s=0)
    app = create_app(Settings(dataset=DS, admin_token=TOKEN, max_body_bytes=10_000), neo4j_info, startup_wait_s=10)
    with TestClient(app) as client:
        yield client, neo4j_driver, db


def test_recommendations_with_verified_explanations(api: tuple[TestClient, Any, str]) -> None:
    c, d, db = api
    r = c.get("/v1/users/u1/recommendations", params={"k": 5, "explain": "true", "reasons": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == "api-v1" and len(body["items"]) == 5
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for it in body["items"]:
        exp = it["explanation"]
        assert exp["item_id"] == it["item_id"] and exp["sentence"]
        for reason in exp["reasons"]:
            assert verify_reason(d, Reason.model_validate(reason), dataset=DS, user_id="u1", item_id=it["item_id"], database=db)


def test_genre_filter_and_exclude_seen_with_fresh_feedback(api: tuple[TestClient, Any, str]) -> None:
    c, _, _ = api
    r = c.get("/v1/users/u2/recommendations", params=[("k", "5"), ("genre", "Comedy"), ("genre", "Horror")])
    assert r.status_code == 200
    for it in r.json()["items"]:
        assert {"Comedy", "Horror"} & set(it["genres"])
    first = c.get("/v1/users/u2/recommendations", params={"k": 3}).json()["items"][0]["item_id"]
    fb = c.post("/v1/interactions", json={"user_id": "u2", "item_id": first, "rating": 2.5})
    assert fb.status_code == 201 and fb.json()["created_relationship"] is True
    assert fb.json()["liked_before"] is False and fb.json()["liked_after"] is False  # 2.5 is below the like threshold
    again = c.post("/v1/interactions", json={"user_id": "u2", "item_id": first, "rating": 4.5}).json()
    assert again["created_relationship"] is False and again["liked_before"] is False and again["liked_after"] is True
    after = [i["item_id"] for i in c.get("/v1/users/u2/recommendations", params={"k": 3}).json()["items"]]
    assert first not in after
    with_seen = [i["item_id"] for i in c.get("/v1/users/u2/recommendations", params={"k": 60, "exclude_seen": "false"}).json()["items"]]
    assert first in with_seen


def test_similar_cold_start_png_health_metrics(api: tuple[TestClient, Any, str]) -> None:
    c, _, _ = api
    s = c.get("/v1/items/i3/similar", params={"k": 4})
    assert s.status_code == 200 and len(s.json()["items"]) == 4 and "i3" not in [i["item_id"] for i in s.json()["items"]]
    cs = c.post("/v1/recommendations", json={"liked_item_ids": ["i1", "i2"], "k": 4, "explain": True})
    assert cs.status_code == 200
    ids = [i["item_id"] for i in cs.json()["items"]]
    assert len(ids) == 4 and not {"i1", "i2"} & set(ids)
    assert all(i["explanation"] is not None for i in cs.json()["items"])
    png = c.get(f"/v1/users/u1/recommendations/{ids[0]}/explanation.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    h = c.get("/v1/health")
    assert h.status_code == 200 and h.json()["neo4j"] == "ok" and h.json()["model_version"] == "api-v1"
    m = c.get("/metrics")
    assert m.status_code == 200 and 'route="/v1/users/{user_id}/recommendations"' in m.text


def test_error_codes(api: tuple[TestClient, Any, str]) -> None:
    c, _, _ = api
    r = c.get("/v1/users/nobody/recommendations")
    assert r.status_code == 404 and "unknown user 'nobody'" in r.json()["detail"]
    r = c.get("/v1/items/nothing/similar")
    assert r.status_code == 404 and "unknown item 'nothing'" in r.json()["detail"]
    assert c.get("/v1/users/u1/recommendations/nothing/explanation.png").status_code == 404
    assert c.post("/v1/interactions", json={"user_id": "u1", "item_id": "nothing"}).status_code == 404
    assert c.post("/v1/interactions", json={"user_id": "stranger", "item_id": "i1"}).status_code == 404
    assert c.post("/v1/recommendations", json={"liked_item_ids": ["nothing"]}).status_code == 404
    assert c.get("/v1/users/u1/recommendations", params={"k": 0}).status_code == 422
    assert c.get("/v1/users/u1/recommendations", params={"year_min": 2000, "year_max": 1990}).status_code == 422
    assert c.post("/v1/interactions", json={"user_id": "u1", "item_id": "i1", "rating": 99}).status_code == 422
    assert c.post("/v1/interactions", content=b"[" + b"1," * 10_000 + b"1]", headers={"content-type": "application/json"}).status_code == 413
    assert c.post("/v1/admin/reload", json={}).status_code == 401
    assert c.post("/v1/admin/reload", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 403


def test_new_user_via_feedback_gets_recommendations(api: tuple[TestClient, Any, str]) -> None:
    c, _, _ = api
    r = c.post("/v1/interactions", json={"user_id": "fresh", "item_id": "i5", "rating": 5, "create_user": True})
    assert r.status_code == 201 and r.json()["created_user"] is True
    recs = c.get("/v1/users/fresh/recommendations", params={"k": 3, "explain": "true"})
    assert recs.status_code == 200 and len(recs.json()["items"]) == 3
    assert "i5" not in [i["item_id"] for i in recs.json()["items"]]


def test_admin_job_runs_the_cli_in_a_subprocess(api: tuple[TestClient, Any, str]) -> None:
    c, _, _ = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # the trainer gets an option it does not know, so the job fails fast right after the snapshot export
    r = c.post("/v1/admin/train", json={"epochs": 1, "publish": False, "extra_args": ["--no-such-option"]}, headers=auth)
    assert r.status_code == 202
    job = r.json()
    assert job["kind"] == "train" and job["state"] in ("queued", "running")
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = c.get(f"/v1/admin/jobs/{job['id']}", headers=auth).json()
        if job["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert job["state"] == "failed" and job["returncode"] not in (None, 0), job
    assert job["commands"][0][:5] == ["graphrec", "snapshot", "export", "--dataset", DS]
    assert len(job["commands"]) == 2 and job["commands"][1][1] == TRAINER  # the export itself succeeded
    assert c.get("/v1/admin/jobs/unknown", headers=auth).status_code == 404
