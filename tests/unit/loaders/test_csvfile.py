"""Unit tests of the generic CSV layout reader and of the max-errors rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphrec.errors import DataError, ValidationFailedError
from graphrec.frames import Problem
from loaders.csvfile import read_csv_dataset
from loaders.validation import enforce_max_errors, format_problems

ITEMS = (
    "id,title,text,year,genres,categories,brand\n"
    'a,Alpha,"A phone, blue",2020,Tech|Phones,Electronics,Acme\n'
    "b,Beta,,,,Books|Books,\n"
)


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_reads_items_users_interactions(tmp_path: Path) -> None:
    items = _write(tmp_path, "items.csv", ITEMS)
    users = _write(tmp_path, "users.csv", "id,age\nu1,30\nu2,40\nu3,50\n")
    inter = _write(tmp_path, "interactions.csv", "user_id,item_id,rating,timestamp,split\nu1,a,5,100,train\nu2,a,,,test\nu2,b,3.5,7,\n")
    frames = read_csv_dataset(items, inter, users, name="shop")
    assert frames.problems == []
    assert list(frames.users["id"]) == ["u1", "u2", "u3"]
    a = frames.items.set_index("id").loc["a"]
    assert a["text"] == "A phone, blue"
    assert a["year"] == 2020
    assert a["genres"] == ["Tech", "Phones"]
    assert a["brands"] == ["Acme"]
    assert frames.items.set_index("id").loc["b", "categories"] == ["Books"]
    inter_df = frames.interactions
    assert list(inter_df["split"]) == ["train", "test", None]
    assert inter_df["rating"].isna().tolist() == [False, True, False]
    assert inter_df["timestamp"].isna().tolist() == [False, True, False]


def test_users_file_is_optional(tmp_path: Path) -> None:
    items = _write(tmp_path, "items.csv", "item_id\na\nb\n")
    inter = _write(tmp_path, "interactions.csv", "user_id,item_id\nx,a\ny,b\nx,b\n")
    frames = read_csv_dataset(items, inter)
    assert list(frames.users["id"]) == ["x", "y"]
    assert frames.interactions["rating"].isna().all()


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",a,1,1", "missing user id"),
        ("u1,,1,1", "missing item id"),
        ("u1,b,five,1", "unparsable rating 'five'"),
        ("u1,b,-1,1", "rating -1 out of range [0.0, 5.0]"),
        ("u1,b,nan,1", "unparsable rating 'nan'"),
        ("u1,zz,1,1", "unknown item 'zz'"),
        ("u9,b,1,1", "unknown user 'u9'"),
        ("u1,a,2,1", "duplicate key: interaction (user_id, item_id) u1, a already on line 2"),
        ("u1,b,1", "wrong column count: expected 4, got 3"),
        ("u1,b,1,1,1", "wrong column count: expected 4, got 5"),
        ("u1,b,1,1.5", "unparsable timestamp '1.5' (not a whole number)"),
    ],
)
def test_bad_interaction_rows(tmp_path: Path, row: str, reason: str) -> None:
    items = _write(tmp_path, "items.csv", ITEMS)
    users = _write(tmp_path, "users.csv", "id\nu1\nu2\n")
    inter = _write(tmp_path, "interactions.csv", f"user_id,item_id,rating,timestamp\nu1,a,4,1\n{row}\n")
    frames = read_csv_dataset(items, inter, users)
    assert [(p.file, p.line, p.reason) for p in frames.problems] == [("interactions.csv", 3, reason)]
    assert len(frames.interactions) == 1


def test_bad_encoding_and_duplicate_users(tmp_path: Path) -> None:
    items = _write(tmp_path, "items.csv", b"id,title\na,ok\nb,caf\xe9\n")
    users = _write(tmp_path, "users.csv", "id\nu1\nu1\n")
    inter = _write(tmp_path, "interactions.csv", "user_id,item_id\nu1,a\n")
    frames = read_csv_dataset(items, inter, users)
    assert sorted((p.file, p.line, p.reason) for p in frames.problems) == [
        ("items.csv", 3, "bad encoding: not utf-8"),
        ("users.csv", 3, "duplicate key: user id u1 already on line 2"),
    ]


def test_missing_required_header(tmp_path: Path) -> None:
    items = _write(tmp_path, "items.csv", "name\na\n")
    inter = _write(tmp_path, "interactions.csv", "user_id,item_id\nu1,a\n")
    with pytest.raises(DataError, match="needs an 'id'"):
        read_csv_dataset(items, inter)


def test_enforce_max_errors() -> None:
    problems = [Problem("r.csv", 3, "missing user id"), Problem("m.csv", 9, "missing title")]
    enforce_max_errors(problems, max_errors=2)
    with pytest.raises(ValidationFailedError) as info:
        enforce_max_errors(problems, max_errors=1)
    assert "nothing was written" in str(info.value)
    assert info.value.problems == [("m.csv", 9, "missing title"), ("r.csv", 3, "missing user id")]
    assert format_problems(problems, limit=1).splitlines() == ["m.csv:9: missing title", "... and 1 more"]
