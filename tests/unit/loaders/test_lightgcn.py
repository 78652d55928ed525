"""Unit tests of the LightGCN split-format reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphrec.errors import DataError
from loaders.lightgcn import read_lightgcn


def _write(folder: Path, name: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    _write(tmp_path, "train.txt", "0 0 1 2\n1 1 3\n2 0\n")
    _write(tmp_path, "test.txt", "0 3\n1 2\n")
    return tmp_path


def test_reads_users_items_and_splits(tiny: Path) -> None:
    frames = read_lightgcn(tiny, name="tiny")
    assert frames.name == "tiny"
    assert list(frames.users["id"]) == ["0", "1", "2"]
    assert list(frames.items["id"]) == ["0", "1", "2", "3"]
    inter = frames.interactions
    assert len(inter) == 8
    assert (inter["split"] == "train").sum() == 6
    test = inter[inter["split"] == "test"]
    assert sorted(zip(test["user_id"], test["item_id"])) == [("0", "3"), ("1", "2")]
    assert inter["rating"].isna().all()
    assert inter["timestamp"].isna().all()
    assert frames.problems == []
    assert frames.rows_read == {"train.txt": 6, "test.txt": 2}  # user-item pairs


def test_user_without_items_is_kept(tmp_path: Path) -> None:
    _write(tmp_path, "train.txt", "0 1\n5\n")
    frames = read_lightgcn(tmp_path)
    assert list(frames.users["id"]) == ["0", "5"]
    assert len(frames.interactions) == 1


def test_id_lists_define_catalogue(tiny: Path) -> None:
    _write(tiny, "user_list.txt", "org_id remap_id\nu0 0\nu1 1\nu2 2\nu3 3\n")
    _write(tiny, "item_list.txt", "org_id remap_id\na 0\nb 1\nc 2\nd 3\ne 4\n")
    frames = read_lightgcn(tiny)
    assert list(frames.users["id"]) == ["0", "1", "2", "3"]
    assert list(frames.users["org_id"]) == ["u0", "u1", "u2", "u3"]
    assert len(frames.items) == 5  # item 4 has no interaction but is in the catalogue


@pytest.mark.parametrize(
    ("train", "line", "reason"),
    [
        ("0 1\n1 x 2\n", 2, "non-integer id 'x'"),
        ("0 1\n1 -2\n", 2, "non-integer id '-2'"),
        (b"0 1\n1 \xff\n", 2, "bad encoding"),
        ("0 1\n0 2\n", 2, "duplicate key: user 0 already listed on line 1"),
        ("0 1 1\n", 1, "duplicate key: item 1 repeated for user 0"),
    ],
)
def test_bad_rows_are_reported_with_line(tmp_path: Path, train: str | bytes, line: int, reason: str) -> None:
    _write(tmp_path, "train.txt", train)
    frames = read_lightgcn(tmp_path)
    assert len(frames.problems) == 1
    problem = frames.problems[0]
    assert (problem.file, problem.line) == ("train.txt", line)
    assert reason in problem.reason


def test_pair_in_train_and_test_is_rejected_from_test(tiny: Path) -> None:
    _write(tiny, "test.txt", "0 3\n1 1\n")
    frames = read_lightgcn(tiny)
    assert [(p.file, p.line) for p in frames.problems] == [("test.txt", 2)]
    assert "also in train.txt" in frames.problems[0].reason
    assert (frames.interactions["split"] == "test").sum() == 1


def test_unknown_item_against_item_list(tiny: Path) -> None:
    _write(tiny, "item_list.txt", "org_id remap_id\na 0\nb 1\nc 2\n")
    frames = read_lightgcn(tiny)
    reasons = [(p.file, p.line, p.reason) for p in frames.problems]
    assert ("train.txt", 2, "unknown item 3 for user 1 (not in item_list.txt)") in reasons
    assert ("test.txt", 1, "unknown item 3 for user 0 (not in item_list.txt)") in reasons
    assert not np.isin(frames.interactions["item_id"].to_numpy(dtype=object), ["3"]).any()


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        read_lightgcn(tmp_path / "nope")
    with pytest.raises(DataError):
        read_lightgcn(tmp_path)
