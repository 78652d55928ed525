"""/v1/health tells the truth (ok / degraded without a model / degraded when the model does not cover the
active generation), publishes that do not belong are refused, and ``graphrec load --mode replace``
reports what it carried."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.cli.main import main
from api.main import create_app
from graph.connection import read, write
from graph.datasets import drop_dataset
from graph.embeddings import active_model, publish
from graph.feedback import Interaction, record_interaction
from graph.load import LoadOptions, load_frames
from graph.recommend_fixtures import random_embeddings
from graphrec.errors import CoverageTooLowError
from graphrec.settings import Settings, get_settings
from loaders.csvfile import read_csv_dataset
from tests.integration.loaders_data import write_csv_dataset

DS = "it-health"


def _frames(folder: Path, name: str, **kw: Any) -> Any:
    paths = write_csv_dataset(folder, **kw)
    return read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name=name)


def _clean(driver: Any, db: str, name: str) -> None:
    drop_dataset(driver, name, db)
    write(driver, "MATCH (m:ActiveModel {dataset: $d}) DETACH DELETE m", {"d": name}, db)


@pytest.fixture
def loaded(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> Any:
    db = neo4j_info.database
    _clean(neo4j_driver, db, DS)
    frames = _frames(tmp_path / "a", DS, n_users=10, n_items=20, per_user=5, seed=3)
    load_frames(neo4j_driver, frames, LoadOptions(mode="replace", progress=False, database=db))
    yield frames
    _clean(neo4j_driver, db, DS)


def test_health_states(loaded: Any, tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    users, items = [f"u{u}" for u in range(10)], [f"i{i}" for i in range(20)]
    app = create_app(Settings(dataset=DS, min_coverage=0.5), neo4j_info, startup_wait_s=10)
    with TestClient(app) as c:
        h = c.get("/v1/health")
        assert h.status_code == 200
        assert h.json()["status"] == "degraded" and "no model is published" in h.json()["reason"]

        publish(neo4j_driver, random_embeddings(users, items, dim=4, seed=1, version="h-v1"), DS, database=db, grace_s=0)
        h = c.get("/v1/health").json()
        assert h["status"] == "ok" and h["reason"] is None and h["coverage"] == 1.0 and h["model_version"] == "h-v1"
        assert h["model_generation"] == h["generation"]

        # a model that knows 4 of the 20 items (no check on the library call): 20 % < 50 %
        publish(neo4j_driver, random_embeddings(users, items[:4], dim=4, seed=2, version="h-v2"), DS, database=db, grace_s=0)
        h = c.get("/v1/health").json()
        assert h["status"] == "degraded" and "20.0%" in h["reason"] and h["coverage"] == pytest.approx(0.2)

        # a reload that does not carry the model: its vectors stay on the old generation
        publish(neo4j_driver, random_embeddings(users, items, dim=4, seed=1, version="h-v3"), DS, database=db, grace_s=0)
        load_frames(neo4j_driver, loaded, LoadOptions(mode="replace", progress=False, database=db, carry_model=False, flip_grace_s=0))
        h = c.get("/v1/health").json()
        assert h["status"] == "degraded" and "published for generation" in h["reason"] and h["coverage"] == 0.0

        # the default reload carries it: ok again
        publish(neo4j_driver, random_embeddings(users, items, dim=4, seed=1, version="h-v4"), DS, database=db, grace_s=0)
        load_frames(neo4j_driver, loaded, LoadOptions(mode="replace", progress=False, database=db, flip_grace_s=0))
        h = c.get("/v1/health").json()
        assert h["status"] == "ok" and h["coverage"] == 1.0 and h["model_generation"] == h["generation"]


def test_publish_refuses_a_model_that_covers_too_little(loaded: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    users, items = [f"u{u}" for u in range(10)], [f"i{i}" for i in range(20)]
    publish(neo4j_driver, random_embeddings(users, items, dim=4, seed=1, version="cov-v1"), DS, database=db, grace_s=0)
    other = random_embeddings(users, [f"other-{i}" for i in range(30)] + items[:2], dim=4, seed=5, version="cov-v2")
    with pytest.raises(CoverageTooLowError, match=r"cover 10\.0% .* below the minimum 50%"):
        publish(neo4j_driver, other, DS, database=db, grace_s=0, min_coverage=0.5)
    m = active_model(neo4j_driver, DS, db)
    assert m is not None and m.version == "cov-v1"
    left = read(neo4j_driver, "MATCH (n) WHERE n.dataset = $d AND any(k IN keys(n) WHERE k STARTS WITH 'emb_cov_v2') RETURN count(n) AS c",
                {"d": DS}, db)
    assert left[0]["c"] == 0  # refused before writing anything
    rep = publish(neo4j_driver, other, DS, database=db, grace_s=0, min_coverage=0.0)  # the override
    assert rep.model.version == "cov-v2"


@pytest.fixture
def cli_env(neo4j_info: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("NEO4J_URI", neo4j_info.uri)
    monkeypatch.setenv("NEO4J_USER", neo4j_info.user)
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_info.password)
    monkeypatch.setenv("NEO4J_DATABASE", neo4j_info.database)
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRAPHREC_DATASET", DS)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_publish_cli_takes_the_dataset_from_the_checkpoint(loaded: Any, cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    users, items = [f"u{u}" for u in range(10)], [f"i{i}" for i in range(20)]
    e = random_embeddings(users, items, dim=4, seed=1, version="cli-v1")
    ckpt = tmp_path / "ckpt.npz"
    np.savez(ckpt, model_version=e.model_version, user_ids=np.asarray(e.user_ids), user_vectors=e.user_vectors,
             item_ids=np.asarray(e.item_ids), item_vectors=e.item_vectors)
    # the snapshot the model was trained on names another catalogue: refused, nothing published
    (tmp_path / "snapshot-manifest.json").write_text(json.dumps({"dataset": "scientific"}), encoding="utf-8")
    code, _, err = _run(["publish", "--checkpoint", str(ckpt), "--dataset", DS, "--no-text-vectors"], capsys)
    assert code == 11 and "trained on dataset 'scientific'" in err and f"not {DS!r}" in err
    assert active_model(neo4j_driver, DS, db) is None
    # without --dataset it would go to 'scientific', which is not loaded: nothing lands on the default dataset
    code, _, err = _run(["publish", "--checkpoint", str(ckpt), "--no-text-vectors"], capsys)
    assert code != 0 and active_model(neo4j_driver, DS, db) is None
    # the right dataset: published
    (tmp_path / "snapshot-manifest.json").write_text(json.dumps({"dataset": DS}), encoding="utf-8")
    code, out, err = _run(["publish", "--checkpoint", str(ckpt), "--no-text-vectors", "--serving-list-size", "0"], capsys)
    assert code == 0, err
    assert f"dataset {DS} (from {tmp_path / 'snapshot-manifest.json'})" in err
    m = active_model(neo4j_driver, DS, db)
    assert m is not None and m.version == "cli-v1"


def test_load_cli_replace_reports_feedback_and_the_model(loaded: Any, cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    users, items = [f"u{u}" for u in range(10)], [f"i{i}" for i in range(20)]
    publish(neo4j_driver, random_embeddings(users, items, dim=4, seed=1, version="load-v1"), DS, database=db, grace_s=0)
    seen = set(loaded.interactions.loc[loaded.interactions["user_id"] == "u1", "item_id"])
    item = next(i for i in items if i not in seen)
    record_interaction(neo4j_driver, Interaction(user_id="u1", item_id=item, rating=4.0), dataset=DS, database=db)
    p = write_csv_dataset(tmp_path / "a", n_users=10, n_items=20, per_user=5, seed=3)  # the same data again
    base = ["load", "csv", "--items", str(p["items"]), "--interactions", str(p["interactions"]), "--users", str(p["users"]),
            "--dataset", DS, "--mode", "replace", "--no-progress", "--no-refit"]
    code, out, err = _run(base, capsys)
    assert code == 0, err
    assert "feedback: 1 found, 1 carried" in out and "model load-v1 kept serving: 20 items and 10 users" in out
    assert "no refit started" in out
    code, out, err = _run(base + ["--drop-feedback"], capsys)
    assert code == 0, err
    assert "1 dropped on request" in out
