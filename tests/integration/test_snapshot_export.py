"""Snapshot export from the graph: a round trip of users, items (text, attributes) and interactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from graph.datasets import drop_dataset
from graph.export import export_snapshot
from graph.load import LoadOptions, load_frames
from graphrec.errors import DataError, NotFoundError
from graphrec.snapshot import SplitSpec, read_snapshot, write_snapshot
from loaders.csvfile import read_csv_dataset
from loaders.lightgcn import read_lightgcn
from tests.integration.loaders_data import write_csv_dataset


@pytest.fixture
def loaded(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> Any:
    name = "it-snapshot"
    db = neo4j_info.database
    drop_dataset(neo4j_driver, name, db)
    paths = write_csv_dataset(tmp_path / "data", n_users=25, n_items=30, per_user=8, seed=7)
    frames = read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name=name)
    load_frames(neo4j_driver, frames, LoadOptions(mode="replace", progress=False, database=db))
    yield name, frames
    drop_dataset(neo4j_driver, name, db)


def _external(snap: Any) -> pd.DataFrame:
    inter = snap.interactions
    return pd.DataFrame(
        {
            "user_id": snap.users["id"].to_numpy()[inter["user_idx"].to_numpy()],
            "item_id": snap.items["id"].to_numpy()[inter["item_idx"].to_numpy()],
            "rating": inter["rating"].to_numpy(dtype=np.float64),
            "timestamp": inter["timestamp"].to_numpy(),
            "split": inter["split"].to_numpy(),
        }
    ).sort_values(["user_id", "item_id"]).reset_index(drop=True)


def test_round_trip_with_the_fixed_split(loaded: Any, tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    name, frames = loaded
    snap = export_snapshot(neo4j_driver, name, SplitSpec(name="fixed", params={"val_fraction": 0.0}), neo4j_info.database)
    out = write_snapshot(snap, tmp_path / "snap")
    back = read_snapshot(out)
    assert back.manifest.hash == snap.manifest.hash and back.manifest.source == "neo4j"
    assert back.manifest.counts["users"] == len(frames.users) and back.manifest.counts["items"] == len(frames.items)
    assert sorted(back.users["id"]) == sorted(frames.users["id"])
    got = _external(back)
    want = frames.interactions.sort_values(["user_id", "item_id"]).reset_index(drop=True)
    assert list(got["user_id"]) == list(want["user_id"]) and list(got["item_id"]) == list(want["item_id"])
    np.testing.assert_allclose(got["rating"], want["rating"].to_numpy(dtype=np.float64))
    assert list(got["timestamp"]) == [int(t) for t in want["timestamp"]]
    assert list(got["split"]) == list(want["split"])  # val_fraction=0: the data's own train/test
    items = back.items.set_index("id")
    src = frames.items.set_index("id")
    for iid in src.index:
        assert items.loc[iid, "title"] == src.loc[iid, "title"]
        assert items.loc[iid, "text"] == src.loc[iid, "text"]
        assert items.loc[iid, "year"] == src.loc[iid, "year"]
        assert sorted(items.loc[iid, "genres"]) == sorted(src.loc[iid, "genres"])
        assert items.loc[iid, "categories"] == src.loc[iid, "categories"]
        assert items.loc[iid, "brands"] == src.loc[iid, "brands"]


def test_named_splits_are_recorded_and_deterministic(loaded: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    name, frames = loaded
    spec = SplitSpec(name="per_user_random", params={"test_fraction": 0.25, "val_fraction": 0.0})
    a = export_snapshot(neo4j_driver, name, spec, neo4j_info.database, seed=3)
    b = export_snapshot(neo4j_driver, name, spec, neo4j_info.database, seed=3)
    c = export_snapshot(neo4j_driver, name, spec, neo4j_info.database, seed=4)
    assert a.manifest.hash == b.manifest.hash and a.manifest.hash != c.manifest.hash
    assert a.manifest.split.params == {"test_fraction": 0.25, "val_fraction": 0.0, "seed": 3}
    assert a.manifest.counts["test"] == 2 * len(frames.users)  # round(8 * 0.25) per user


def test_lightgcn_files_keep_their_indices_and_test_split(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    (tmp_path / "train.txt").write_text("0 0 1 2\n1 1 3\n2 0 4\n")
    (tmp_path / "test.txt").write_text("0 3\n1 4\n2 2\n")
    frames = read_lightgcn(tmp_path, name="it-lgcn")
    drop_dataset(neo4j_driver, "it-lgcn", db)
    load_frames(neo4j_driver, frames, LoadOptions(progress=False, database=db))
    snap = export_snapshot(neo4j_driver, "it-lgcn", SplitSpec(name="fixed", params={"val_fraction": 0.0}), db)
    assert list(snap.users["id"]) == ["0", "1", "2"] and list(snap.items["id"]) == ["0", "1", "2", "3", "4"]
    test = snap.split_frame("test")
    assert sorted(zip(test["user_idx"], test["item_idx"])) == [(0, 3), (1, 4), (2, 2)]
    assert snap.interactions["rating"].isna().all() and (snap.interactions["timestamp"] == -1).all()
    drop_dataset(neo4j_driver, "it-lgcn", db)


def test_errors(loaded: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    with pytest.raises(NotFoundError):
        export_snapshot(neo4j_driver, "no-such-dataset", SplitSpec(name="leave_one_out"), neo4j_info.database)


def test_fixed_split_needs_the_datas_own_split(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any) -> None:
    db = neo4j_info.database
    paths = write_csv_dataset(tmp_path, n_users=5, n_items=8, per_user=3, with_split=False)
    frames = read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name="it-nosplit")
    drop_dataset(neo4j_driver, "it-nosplit", db)
    load_frames(neo4j_driver, frames, LoadOptions(progress=False, database=db))
    with pytest.raises(DataError, match="fixed"):
        export_snapshot(neo4j_driver, "it-nosplit", SplitSpec(name="fixed"), db)
    drop_dataset(neo4j_driver, "it-nosplit", db)
