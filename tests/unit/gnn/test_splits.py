"""Tests of the named splits in graphrec.splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec.errors import DataError, InvalidArgumentError
from graphrec.snapshot import SplitSpec
from graphrec.splits import SPLITS, apply_split, fixed, leave_one_out, per_user_random, per_user_temporal


def _frame(n_users: int = 30, n_items: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = int(rng.integers(1, 20))
        items = rng.choice(n_items, size=k, replace=False)
        for i in items:
            rows.append((u, int(i), float(rng.integers(1, 6)), int(rng.integers(0, 1000))))
    df = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    df["split"] = np.where(rng.random(len(df)) < 0.2, "test", "train")
    return df


SPECS = [
    SplitSpec(name="fixed", params={"val_fraction": 0.2}),
    SplitSpec(name="per_user_random", params={"test_fraction": 0.2, "val_fraction": 0.1}),
    SplitSpec(name="per_user_temporal", params={"test_fraction": 0.3, "val_fraction": 0.2}),
    SplitSpec(name="leave_one_out", params={"order": "temporal"}),
    SplitSpec(name="leave_one_out", params={"order": "random", "val": False}),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.params}")
def test_split_labels_rows_and_determinism(spec: SplitSpec) -> None:
    df = _frame()
    out = apply_split(df, spec, seed=3)
    assert len(out) == len(df)
    assert set(out["split"]) <= {"train", "val", "test"}
    pd.testing.assert_frame_equal(out.drop(columns="split"), df.drop(columns="split"))
    again = apply_split(df, spec, seed=3)
    assert (again["split"] == out["split"]).all()
    # row order does not matter
    shuffled = df.sample(frac=1.0, random_state=1)
    out_sh = apply_split(shuffled, spec, seed=3).sort_index()
    assert (out_sh["split"] == out["split"]).all()
    # every user with interactions keeps at least one training interaction
    per_user_train = out.assign(t=out["split"] == "train").groupby("user_idx")["t"].sum()
    if spec.name != "fixed":
        assert (per_user_train >= 1).all()


@pytest.mark.parametrize("name", ["per_user_random", "fixed"])
def test_seed_changes_random_split(name: str) -> None:
    df = _frame(n_users=50)
    a = apply_split(df, SplitSpec(name=name), seed=1)["split"]
    b = apply_split(df, SplitSpec(name=name), seed=2)["split"]
    assert (a != b).any()


def test_fixed_keeps_own_test_and_carves_val_from_train() -> None:
    df = _frame()
    out = fixed(df, val_fraction=0.25, seed=0)
    assert ((df["split"] == "test") == (out["split"] == "test")).all()
    assert (out.loc[df["split"] == "train", "split"] != "test").all()
    n_train = (df["split"] == "train").groupby(df["user_idx"]).sum()
    n_val = (out["split"] == "val").groupby(df["user_idx"]).sum()
    expected = np.minimum(np.floor(n_train * 0.25 + 0.5), np.maximum(n_train - 1, 0))
    assert (n_val == expected).all()


def test_fixed_needs_split_column() -> None:
    with pytest.raises(DataError):
        fixed(_frame().drop(columns="split"))


def test_per_user_counts() -> None:
    df = pd.DataFrame({"user_idx": [0] * 10 + [1] * 1, "item_idx": list(range(10)) + [0]})
    out = per_user_random(df, test_fraction=0.2, val_fraction=0.25, seed=0)
    u0 = out[out.user_idx == 0]["split"].value_counts()
    assert u0["test"] == 2 and u0["val"] == 2 and u0["train"] == 6
    assert out[out.user_idx == 1]["split"].tolist() == ["train"]


def test_temporal_holds_out_latest() -> None:
    df = pd.DataFrame({"user_idx": [0] * 5, "item_idx": [4, 3, 2, 1, 0], "timestamp": [50, 40, 30, 20, 10]})
    out = per_user_temporal(df, test_fraction=0.2, val_fraction=0.25, seed=0)
    assert out["split"].tolist() == ["test", "val", "train", "train", "train"]


def test_leave_one_out_small_users() -> None:
    df = pd.DataFrame(
        {"user_idx": [0, 1, 1, 2, 2, 2], "item_idx": [0, 0, 1, 0, 1, 2], "timestamp": [1, 1, 2, 1, 2, 3]}
    )
    out = leave_one_out(df)
    assert out["split"].tolist() == ["train", "train", "test", "train", "val", "test"]


def test_apply_split_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        apply_split(_frame(), SplitSpec(name="nope"))
    with pytest.raises(InvalidArgumentError):
        apply_split(_frame(), SplitSpec(name="per_user_random", params={"bogus": 1}))
    with pytest.raises(InvalidArgumentError):
        per_user_random(_frame(), test_fraction=1.5)
    assert set(SPLITS) == {"fixed", "per_user_random", "per_user_temporal", "leave_one_out"}
