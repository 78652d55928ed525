"""Where ``graphrec publish`` takes the dataset from, and what a replace reload starts afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.cli.publish_cmd import SNAPSHOT_MANIFEST, checkpoint_dataset, resolve_dataset
from api.cli.refit_cmd import start_refit_detached
from api.refit import TRAINER, default_refit_steps
from graphrec.errors import DatasetMismatchError
from graphrec.settings import Settings


def test_lightgcn_meta_names_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"dataset": "gowalla"}), encoding="utf-8")
    assert checkpoint_dataset(tmp_path) == ("gowalla", str(tmp_path / "meta.json"))
    assert resolve_dataset(tmp_path, None, "movielens")[0] == "gowalla"
    with pytest.raises(DatasetMismatchError, match="trained on dataset 'gowalla'.*not 'movielens'"):
        resolve_dataset(tmp_path, "movielens", "movielens")


def test_fusion_checkpoint_found_through_its_snapshot_hash(tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "model"
    ckpt.mkdir()
    torch.save({"meta": {"metrics": {"snapshot_hash": "abc123"}}}, ckpt / "fusion.pt")
    snaps = tmp_path / "snapshots"
    for name, digest, ds in (("one", "zzz", "movielens"), ("two", "abc123", "scientific")):
        (snaps / name).mkdir(parents=True)
        (snaps / name / "manifest.json").write_text(json.dumps({"dataset": ds, "hash": digest}), encoding="utf-8")
    assert checkpoint_dataset(ckpt, snaps)[0] == "scientific"
    assert checkpoint_dataset(ckpt / "fusion.pt", snaps)[0] == "scientific"
    with pytest.raises(DatasetMismatchError):
        resolve_dataset(ckpt, "movielens", "movielens", snaps)
    # the manifest written next to the checkpoint wins
    (ckpt / SNAPSHOT_MANIFEST).write_text(json.dumps({"dataset": "movielens"}), encoding="utf-8")
    assert resolve_dataset(ckpt, "movielens", "movielens", snaps) == ("movielens", str(ckpt / SNAPSHOT_MANIFEST))


def test_unknown_dataset_falls_back_to_the_explicit_or_default_one(tmp_path: Path) -> None:
    f = tmp_path / "e.npz"
    f.write_bytes(b"")
    assert resolve_dataset(f, "toy", "movielens") == ("toy", "--dataset")
    ds, source = resolve_dataset(f, None, "movielens")
    assert ds == "movielens" and source.startswith("GRAPHREC_DATASET")


def test_refit_steps_and_the_detached_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path)
    steps = default_refit_steps("movielens", settings, epochs=3)
    assert steps[0][:2] == ["snapshot", "export"] and steps[-1][0] == "publish"
    out = steps[-1][steps[-1].index("--checkpoint") + 1]
    snap = steps[0][steps[0].index("--out") + 1]
    train = steps[1]
    assert train[0] == TRAINER and train[train.index("--out") + 1] == out and train[train.index("--snapshot") + 1] == snap

    seen: dict[str, Any] = {}

    class FakePopen:
        pid = 4242

        def __init__(self, args: list[str], **kw: Any) -> None:
            seen["args"], seen["kw"] = args, kw

    monkeypatch.setattr("api.cli.refit_cmd.subprocess.Popen", FakePopen)
    pid, log = start_refit_detached("movielens", settings)
    assert pid == 4242 and log.parent == tmp_path / "logs" and log.exists()
    assert seen["args"][-3:] == ["refit", "--dataset", "movielens"]
    assert seen["kw"]["start_new_session"] is True
