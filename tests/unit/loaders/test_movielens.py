"""Unit tests of the MovieLens readers (bundled ml-latest-small and small synthetic 100k / 1m / 25m folders)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from graphrec.errors import DataError
from loaders.movielens import BUNDLED_DIR, detect_format, read_movielens


def _write(folder: Path, name: str, text: str | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode() if isinstance(text, str) else text)


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) - 1


def test_bundled_latest_small_counts_match_the_files() -> None:
    frames = read_movielens()
    assert frames.problems == []
    assert len(frames.items) == _count_lines(BUNDLED_DIR / "movies.csv")
    assert len(frames.interactions) == _count_lines(BUNDLED_DIR / "ratings.csv")
    assert len(frames.tag_applications) == _count_lines(BUNDLED_DIR / "tags.csv")
    ratings = pd.read_csv(BUNDLED_DIR / "ratings.csv")
    assert len(frames.users) == ratings["userId"].nunique()
    movies = pd.read_csv(BUNDLED_DIR / "movies.csv")
    expected_genres = set(movies["genres"].str.split("|").explode())
    assert set(frames.attribute_values("genres")) == expected_genres
    assert "(no genres listed)" in frames.attribute_values("genres")
    assert frames.interactions["split"].isna().all()
    assert frames.interactions["rating"].between(0.5, 5.0).all()


def test_items_get_year_tags_and_text() -> None:
    frames = read_movielens()
    toy = frames.items.set_index("id").loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["year"] == 1995
    assert "Animation" in toy["genres"]
    assert "pixar" in toy["tags"]
    assert toy["text"].startswith("Toy Story (1995). Genres: ")


LATEST_MOVIES = 'movieId,title,genres\n1,"Heat, The (1995)",Action|Crime\n2,Up (2009),Animation\n'


@pytest.mark.parametrize(
    ("ratings", "line", "reason"),
    [
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n,2,3.0,11\n", 3, "missing user id"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,abc,11\n", 3, "unparsable rating 'abc'"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,7.5,11\n", 3, "rating 7.5 out of range [0.5, 5.0]"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,99,3.0,11\n", 3, "unknown item '99'"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.0\n", 3, "wrong column count: expected 4, got 3"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,1,3.0,11\n", 3, "duplicate key: rating of (user, item) 1, 1 already on line 2"),
        (b"userId,movieId,rating,timestamp\n1,1,4.0,10\n1\xff,2,3.0,11\n", 3, "bad encoding: not utf-8"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.0,yesterday\n", 3, "unparsable timestamp 'yesterday'"),
    ],
)
def test_each_bad_row_kind_is_reported(tmp_path: Path, ratings: str | bytes, line: int, reason: str) -> None:
    _write(tmp_path, "movies.csv", LATEST_MOVIES)
    _write(tmp_path, "ratings.csv", ratings)
    frames = read_movielens(tmp_path)
    assert [(p.file, p.line, p.reason) for p in frames.problems] == [("ratings.csv", line, reason)]
    assert len(frames.interactions) == 1  # the good row survives, the bad one does not


def test_bad_item_rows(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", LATEST_MOVIES + ",No Id (2000),Drama\n1,Dup (2001),Drama\n3,,Drama\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n")
    frames = read_movielens(tmp_path)
    assert [(p.line, p.reason) for p in frames.problems] == [
        (4, "missing item id"),
        (5, "duplicate key: item id 1 already on line 2"),
        (6, "missing title"),
    ]
    assert list(frames.items["id"]) == ["1", "2"]
    assert frames.items.loc[0, "title"] == "Heat, The (1995)"


def test_quoted_multiline_field_keeps_line_numbers(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", 'movieId,title,genres\n1,"Two\nLines (1999)",Drama\n2,Up (2009),Animation,Extra\n')
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4.0,10\r\n")
    frames = read_movielens(tmp_path)
    assert [(p.file, p.line) for p in frames.problems] == [("movies.csv", 4)]
    assert frames.items.loc[0, "year"] == 1999


def test_tags_validation(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", LATEST_MOVIES)
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n")
    _write(tmp_path, "tags.csv", "userId,movieId,tag,timestamp\n1,1,Funny,5\n2,1,,5\n2,42,funny,5\n1,1,Funny,6\n2,2,funny,7\n")
    frames = read_movielens(tmp_path)
    assert [(p.file, p.line) for p in frames.problems] == [("tags.csv", 3), ("tags.csv", 4), ("tags.csv", 5)]
    assert len(frames.tag_applications) == 2
    assert list(frames.users["id"]) == ["1", "2"]  # user 2 only tagged
    assert frames.items.set_index("id").loc["1", "tags"] == ["funny"]


def test_25m_layout_is_the_csv_layout(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", LATEST_MOVIES)
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n2,2,0.5,11\n")
    frames = read_movielens(tmp_path, fmt="25m")
    assert frames.counts["interactions"] == 2
    assert "movielens-25m" in frames.source


def test_100k_layout(tmp_path: Path) -> None:
    genres = "unknown|0\nAction|1\nAdventure|2\n"
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(3))
    item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags(2)}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://y|{flags(1, 2)}\n"
        "3|Caf\xe9 (1996)|01-Jan-1996||http://z|0|0\n"
    ).encode("latin-1")
    _write(tmp_path, "u.genre", genres)
    _write(tmp_path, "u.item", item)
    _write(tmp_path, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    _write(tmp_path, "u.data", "1\t1\t5\t874965758\n2\t2\t3\t876893171\n9\t1\t3\t1\n1\t2\t0\t1\n")
    assert detect_format(tmp_path) == "100k"
    frames = read_movielens(tmp_path)
    assert sorted((p.file, p.line, p.reason) for p in frames.problems) == [
        ("u.data", 3, "unknown user '9'"),
        ("u.data", 4, "rating 0 out of range [1.0, 5.0]"),
        ("u.item", 3, "wrong column count: expected 8, got 7"),
    ]
    assert list(frames.users["id"]) == ["1", "2", "3"]
    assert frames.items.set_index("id").loc["2", "genres"] == ["Action", "Adventure"]
    assert len(frames.interactions) == 2


def test_1m_layout_latin1(tmp_path: Path) -> None:
    _write(tmp_path, "movies.dat", "1::Toy Story (1995)::Animation|Comedy\n2::Caf\xe9 Society (2016)::Drama\n".encode("latin-1"))
    _write(tmp_path, "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    _write(tmp_path, "ratings.dat", "1::1::5::978300760\n2::2::4::978300761\n2::2::3::978300762\n2::1\n")
    assert detect_format(tmp_path) == "1m"
    frames = read_movielens(tmp_path)
    assert sorted((p.file, p.line) for p in frames.problems) == [("ratings.dat", 3), ("ratings.dat", 4)]
    assert frames.items.set_index("id").loc["2", "title"] == "Café Society (2016)"
    assert frames.items.set_index("id").loc["1", "genres"] == ["Animation", "Comedy"]
    assert len(frames.interactions) == 2


def test_missing_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        read_movielens(tmp_path / "absent")
    with pytest.raises(DataError):
        read_movielens(tmp_path)
    _write(tmp_path, "movies.csv", "id,name\n1,x\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match="header lacks column"):
        read_movielens(tmp_path)
