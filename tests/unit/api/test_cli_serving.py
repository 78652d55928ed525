"""Pure helpers of the serving CLI: checkpoint loading, latest checkpoint, percentiles, Browser queries."""

from __future__ import annotations

import json

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.serve import percentiles, run_load
from api.cli.demo_cmd import browser_queries
from api.cli.publish_cmd import latest_checkpoint, load_embeddings
from graphrec.errors import ConfigError


def test_load_embeddings_from_npz(tmp_path: Path) -> None:
    f = tmp_path / "m.npz"
    np.savez(f, model_version="v9", user_ids=np.array(["u1", "u2"]), user_vectors=np.ones((2, 3)),
             item_ids=np.array(["a", "b", "c"]), item_vectors=np.zeros((3, 3)))
    e = load_embeddings(f)
    assert e.model_version == "v9" and e.user_ids == ["u1", "u2"] and e.item_ids == ["a", "b", "c"]
    assert e.user_vectors.shape == (2, 3) and e.coldstart is None
    with pytest.raises(ConfigError):
        load_embeddings(tmp_path / "missing")


def _checkpoint(folder: Path, dataset: str | None = None, weights: str = "model.pt") -> Path:
    folder.mkdir(parents=True)
    (folder / weights).write_bytes(b"x")
    if dataset is not None:
        (folder / "meta.json").write_text(json.dumps({"dataset": dataset}))
    time.sleep(0.02)
    return folder


def test_latest_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        latest_checkpoint(tmp_path / "none")
    with pytest.raises(ConfigError):
        latest_checkpoint(tmp_path)  # empty models folder
    # `graphrec train` layout: models/<dataset>/<version>/ (the dataset folder itself is no checkpoint)
    old = _checkpoint(tmp_path / "gowalla" / "20260101T000000Z-lightgcn", "gowalla")
    fused = _checkpoint(tmp_path / "demo-movielens-1", weights="fusion.pt")  # `graphrec fuse` / demo layout
    new = _checkpoint(tmp_path / "gowalla" / "20260102T000000Z-lightgcn", "gowalla")
    (tmp_path / "gowalla" / ".tmp-partial").mkdir()
    (tmp_path / ".tmp-partial").mkdir()
    (tmp_path / "notes").mkdir()  # a folder without weights
    assert latest_checkpoint(tmp_path) == new
    assert latest_checkpoint(tmp_path, "gowalla") == new
    # a checkpoint recording another dataset is skipped; one recording none may serve any dataset
    assert latest_checkpoint(tmp_path, "movielens") == fused
    assert old != new
    npz = tmp_path / "exported.npz"
    npz.write_bytes(b"x")
    assert latest_checkpoint(tmp_path, "movielens") == npz


def test_percentiles_and_run_load() -> None:
    p = percentiles([i / 1000 for i in range(1, 101)])
    assert p["p50_ms"] == pytest.approx(50.5, abs=1) and p["p99_ms"] == pytest.approx(99, abs=1.1)
    calls: list[int] = []
    r = run_load(calls.append, 50, 4, warmup=5)
    assert r["n"] == 50 and r["errors"] == 0 and len(calls) == 55 and r["throughput_rps"] > 0


def test_browser_queries_name_the_dataset_user_and_item() -> None:
    qs = browser_queries("movielens", "1", "1221")
    assert len(qs) == 3
    assert "NEIGHBOUR" in qs[0][1] and "id: '1'" in qs[0][1] and "dataset: 'movielens'" in qs[0][1]
    assert "id: '1221'" in qs[1][1] and "(j:Item)-[n:NEIGHBOUR]->" in qs[1][1] and "RETURN p" in qs[1][1]
    assert "ActiveModel" in qs[2][1] and "m.kind" in qs[2][1]


def test_demo_with_lightgcn_trains_it_on_the_snapshot_then_fuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    from types import SimpleNamespace

    from api.cli import demo_cmd

    ran: list[tuple[str, ...]] = []

    def fake(*args: str, **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        return subprocess.CompletedProcess(list(args), 0, "", "")

    monkeypatch.setattr(demo_cmd, "_graphrec", fake)
    settings = SimpleNamespace(snapshots_dir=tmp_path / "snap", models_dir=tmp_path / "models")
    out = demo_cmd._train("movielens", settings, None, "fit", lightgcn=True)
    assert [a[0] for a in ran] == ["snapshot", "train", "fit"]
    snap = ran[0][ran[0].index("--out") + 1]
    train, fit = ran[1], ran[2]
    assert train[train.index("--snapshot") + 1] == snap and train[train.index("--recipe") + 1] == "default"
    assert fit[fit.index("--lightgcn") + 1] == train[train.index("--out") + 1] and fit[fit.index("--out") + 1] == str(out)
    ran.clear()
    demo_cmd._train("movielens", settings, None, "fit")
    assert [a[0] for a in ran] == ["snapshot", "fit"] and "--lightgcn" not in ran[1]
