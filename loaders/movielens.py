"""MovieLens readers: ml-latest-small (bundled), ml-latest / ml-25m, ml-100k and ml-1m layouts.

Formats (GroupLens):

========== ============================================= ============================ ========
format     files                                         separator / encoding         ratings
========== ============================================= ============================ ========
``latest`` movies.csv, ratings.csv, tags.csv (header)     ``,`` with quotes / UTF-8    0.5-5.0
``25m``    same as ``latest``                            same                         0.5-5.0
``100k``   u.item, u.data, u.user, u.genre (no header)   ``|`` and tab / latin-1      1-5
``1m``     movies.dat, ratings.dat, users.dat (no header) ``::`` / latin-1            1-5
========== ============================================= ============================ ========

Items get ``title``, ``year`` (from the ``(1995)`` suffix of the title), ``genres`` (the
``(no genres listed)`` value is kept as a genre, as MovieLens ships it), ``tags`` (distinct
lower-cased tags users applied, most frequent first) and ``text`` (title, genres and up to ten
tags, for the text encoder). Users are those of the users file when the layout has one, else every
user seen in ratings or tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from graphrec.errors import DataError
from graphrec.frames import DatasetFrames, Problem, normalise_interactions, normalise_items
from loaders.csvscan import scan_table
from loaders.validation import TableCheck

MovieLensFormat = Literal["latest", "25m", "100k", "1m"]
FORMATS: tuple[str, ...] = ("latest", "25m", "100k", "1m")

BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "ml-latest-small"
"""The ml-latest-small files shipped with graphrec (GroupLens licence in its README.txt)."""

ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item`` in file order (used when ``u.genre`` is absent)."""

_YEAR = r"\((\d{4})[^)]*\)\s*$"
MAX_TEXT_TAGS = 10


def detect_format(path: str | os.PathLike[str]) -> MovieLensFormat:
    """Guess the layout of a MovieLens folder from the files it holds."""
    root = Path(path)
    if (root / "u.data").exists():
        return "100k"
    if (root / "ratings.dat").exists():
        return "1m"
    if (root / "ratings.csv").exists():
        return "latest"
    raise DataError(f"{root} does not look like a MovieLens folder (no ratings.csv, ratings.dat or u.data)")


def _year_from_title(title: pd.Series) -> pd.Series:
    return pd.to_numeric(title.str.extract(_YEAR, expand=False), errors="coerce").astype("Int64")


def _split_values(values: pd.Series, sep: str = "|") -> list[list[str]]:
    return [[v.strip() for v in s.split(sep) if v.strip()] if s else [] for s in values.to_numpy(dtype=object)]


def _id_sort_key(ids: pd.Series) -> pd.Series:
    """Sort key putting numeric ids in numeric order, others after them in text order."""
    return pd.to_numeric(ids, errors="coerce")


def _sorted_ids(ids: pd.Series) -> pd.Series:
    uniq = pd.Series(pd.unique(ids.to_numpy(dtype=object)), dtype=object)
    key = _id_sort_key(uniq)
    order = np.lexsort((uniq.to_numpy(dtype=str), key.fillna(np.inf).to_numpy()))
    return uniq.iloc[order].reset_index(drop=True)


def _item_text(title: str, genres: list[str], tags: list[str]) -> str:
    parts = [title.strip()]
    shown = [g for g in genres if g != "(no genres listed)"]
    if shown:
        parts.append("Genres: " + ", ".join(shown))
    if tags:
        parts.append("Tags: " + ", ".join(tags[:MAX_TEXT_TAGS]))
    return ". ".join(p for p in parts if p) + "."


def _finish(
    name: str,
    source: str,
    items: pd.DataFrame,
    ratings: pd.DataFrame,
    tags: pd.DataFrame | None,
    users: pd.DataFrame | None,
    problems: list[Problem],
    rows_read: dict[str, int],
) -> DatasetFrames:
    """Add tags and text to items, derive users if needed, and assemble the frames."""
    if tags is not None and len(tags):
        tag_norm = tags["tag"].str.strip().str.lower()
        counts = (
            pd.DataFrame({"item_id": tags["item_id"].to_numpy(dtype=object), "tag": tag_norm.to_numpy(dtype=object)})
            .value_counts()
            .reset_index(name="n")
            .sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
        )
        per_item = counts.groupby("item_id", sort=False)["tag"].agg(list)
        items["tags"] = [per_item.get(i, []) for i in items["id"].to_numpy(dtype=object)]
    else:
        items["tags"] = [[] for _ in range(len(items))]
    items["text"] = [_item_text(t, g, tg) for t, g, tg in zip(items["title"], items["genres"], items["tags"])]
    if users is None:
        seen = [ratings["user_id"]] + ([tags["user_id"]] if tags is not None else [])
        users = pd.DataFrame({"id": _sorted_ids(pd.concat(seen, ignore_index=True)).to_numpy(dtype=object)})
    tag_apps = (
        tags[["user_id", "item_id", "tag", "timestamp"]].reset_index(drop=True)
        if tags is not None
        else pd.DataFrame({"user_id": [], "item_id": [], "tag": [], "timestamp": pd.Series([], dtype="Int64")})
    )
    return DatasetFrames(
        name=name,
        source=source,
        users=users.reset_index(drop=True),
        items=normalise_items(items),
        interactions=normalise_interactions(ratings),
        tag_applications=tag_apps,
        problems=problems,
        rows_read=rows_read,
    )


def _check_items(check: TableCheck, id_col: str, title_col: str) -> pd.Series:
    ids = check.require(id_col, "item id")
    check.unique([id_col], [ids], "item id")
    check.require(title_col, "title")
    return ids


def _check_ratings(
    check: TableCheck, user_col: str, item_col: str, rating_col: str, ts_col: str, known_items: pd.Index, lo: float, hi: float
) -> pd.DataFrame:
    users = check.require(user_col, "user id")
    items = check.require(item_col, "item id")
    rating = check.number(rating_col, lo=lo, hi=hi, required=True, what="rating")
    ts = check.number(ts_col, integer=True, lo=0, what="timestamp")
    check.known(items, known_items, "item")
    check.unique([user_col, item_col], [users, items], "rating of (user, item)")
    ok = check.ok
    return pd.DataFrame(
        {
            "user_id": users[ok].to_numpy(dtype=object),
            "item_id": items[ok].to_numpy(dtype=object),
            "rating": rating[ok].to_numpy(),
            "timestamp": ts[ok].array,
            "split": None,
        }
    )


def read_movielens_csv(path: str | os.PathLike[str], name: str = "movielens", fmt: MovieLensFormat = "latest") -> DatasetFrames:
    """Read the ml-latest(-small) / ml-25m CSV layout (``movies.csv``, ``ratings.csv``, optional ``tags.csv``)."""
    root = Path(path)
    for f in ("movies.csv", "ratings.csv"):
        if not (root / f).exists():
            raise DataError(f"{root} has no {f} (MovieLens {fmt} layout: movies.csv, ratings.csv, tags.csv)")
    problems: list[Problem] = []
    rows_read: dict[str, int] = {}

    movies = scan_table(root / "movies.csv", problems=problems)
    rows_read[movies.file] = movies.rows_read
    _require_columns(movies.frame, ("movieId", "title", "genres"), root / "movies.csv")
    mc = TableCheck(movies, problems)
    ids = _check_items(mc, "movieId", "title")
    mv = movies.frame[mc.ok]
    items = pd.DataFrame({"id": ids[mc.ok].to_numpy(dtype=object), "title": mv["title"].str.strip().to_numpy(dtype=object)})
    items["year"] = _year_from_title(items["title"].astype("str")).array
    items["genres"] = _split_values(mv["genres"])
    known = pd.Index(items["id"])

    ratings = scan_table(root / "ratings.csv", problems=problems)
    rows_read[ratings.file] = ratings.rows_read
    _require_columns(ratings.frame, ("userId", "movieId", "rating", "timestamp"), root / "ratings.csv")
    rdf = _check_ratings(TableCheck(ratings, problems), "userId", "movieId", "rating", "timestamp", known, 0.5, 5.0)

    tags = None
    if (root / "tags.csv").exists():
        tscan = scan_table(root / "tags.csv", problems=problems)
        rows_read[tscan.file] = tscan.rows_read
        _require_columns(tscan.frame, ("userId", "movieId", "tag", "timestamp"), root / "tags.csv")
        tc = TableCheck(tscan, problems)
        tu = tc.require("userId", "user id")
        ti = tc.require("movieId", "item id")
        tt = tc.require("tag", "tag")
        tts = tc.number("timestamp", integer=True, lo=0, what="timestamp")
        tc.known(ti, known, "item")
        tc.unique(["userId", "movieId", "tag"], [tu, ti, tt], "tag application (user, item, tag)")
        ok = tc.ok
        tags = pd.DataFrame(
            {"user_id": tu[ok].to_numpy(dtype=object), "item_id": ti[ok].to_numpy(dtype=object), "tag": tt[ok].to_numpy(dtype=object), "timestamp": tts[ok].array}
        )
    source = "ml-latest-small (bundled)" if root.resolve() == BUNDLED_DIR else f"movielens-{fmt}:{root}"
    return _finish(name, source, items, rdf, tags, None, problems, rows_read)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: line 1: header lacks column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")


def _read_optional_users(
    path: Path, sep: str, names: list[str], problems: list[Problem], rows_read: dict[str, int]
) -> pd.DataFrame | None:
    """Read and validate a headerless latin-1 users file (ml-100k ``u.user``, ml-1m ``users.dat``) if present.

    Returns:
        A frame with the valid user ``id`` column, or ``None`` when the file does not exist.
    """
    if not path.exists():
        return None
    us = scan_table(path, sep=sep, header=False, names=names, encoding="latin-1", quoting=False, problems=problems)
    rows_read[us.file] = us.rows_read
    uc = TableCheck(us, problems)
    uid = uc.require("id", "user id")
    uc.unique(["id"], [uid], "user id")
    return pd.DataFrame({"id": uid[uc.ok].to_numpy(dtype=object)})


def read_movielens_100k(path: str | os.PathLike[str], name: str = "movielens") -> DatasetFrames:
    """Read the ml-100k layout (``u.item``, ``u.data``, optional ``u.user`` and ``u.genre``)."""
    root = Path(path)
    for f in ("u.item", "u.data"):
        if not (root / f).exists():
            raise DataError(f"{root} has no {f} (MovieLens 100k layout: u.item, u.data, u.user)")
    problems: list[Problem] = []
    rows_read: dict[str, int] = {}
    genres = list(ML100K_GENRES)
    if (root / "u.genre").exists():
        g = scan_table(root / "u.genre", sep="|", header=False, names=["name", "idx"], encoding="latin-1", quoting=False, problems=problems)
        named = g.frame[g.frame["name"].str.strip() != ""]
        genres = [n.strip() for n, _ in sorted(zip(named["name"], named["idx"]), key=lambda t: int(t[1]))] or genres
    cols = ["movieId", "title", "release", "video", "url", *[f"g{i}" for i in range(len(genres))]]
    scan = scan_table(root / "u.item", sep="|", header=False, names=cols, encoding="latin-1", quoting=False, problems=problems)
    rows_read[scan.file] = scan.rows_read
    mc = TableCheck(scan, problems)
    ids = _check_items(mc, "movieId", "title")
    flags = np.stack([mc.text(f"g{i}").to_numpy(dtype=object) == "1" for i in range(len(genres))], axis=1) if len(scan.frame) else np.zeros((0, len(genres)), bool)
    mv = scan.frame[mc.ok]
    items = pd.DataFrame({"id": ids[mc.ok].to_numpy(dtype=object), "title": mv["title"].str.strip().to_numpy(dtype=object)})
    year = _year_from_title(items["title"].astype("str"))
    release_year = pd.to_numeric(mv["release"].str.extract(r"(\d{4})\s*$", expand=False), errors="coerce").astype("Int64").reset_index(drop=True)
    items["year"] = year.fillna(release_year).array
    items["genres"] = [[genres[j] for j in np.flatnonzero(row)] for row in flags[mc.ok]]
    known = pd.Index(items["id"])

    users = _read_optional_users(root / "u.user", "|", ["id", "age", "gender", "occupation", "zip"], problems, rows_read)

    rs = scan_table(root / "u.data", sep="\t", header=False, names=["userId", "movieId", "rating", "timestamp"], encoding="latin-1", quoting=False, problems=problems)
    rows_read[rs.file] = rs.rows_read
    rc = TableCheck(rs, problems)
    rdf = _check_ratings_with_users(rc, known, users, 1.0, 5.0)
    return _finish(name, f"movielens-100k:{root}", items, rdf, None, users, problems, rows_read)


def _check_ratings_with_users(check: TableCheck, known_items: pd.Index, users: pd.DataFrame | None, lo: float, hi: float) -> pd.DataFrame:
    if users is not None:
        check.known(check.text("userId"), pd.Index(users["id"]), "user")
    return _check_ratings(check, "userId", "movieId", "rating", "timestamp", known_items, lo, hi)


def read_movielens_1m(path: str | os.PathLike[str], name: str = "movielens") -> DatasetFrames:
    """Read the ml-1m layout (``movies.dat``, ``ratings.dat``, optional ``users.dat``; ``::``-separated, latin-1)."""
    root = Path(path)
    for f in ("movies.dat", "ratings.dat"):
        if not (root / f).exists():
            raise DataError(f"{root} has no {f} (MovieLens 1m layout: movies.dat, ratings.dat, users.dat)")
    problems: list[Problem] = []
    rows_read: dict[str, int] = {}
    scan = scan_table(root / "movies.dat", sep="::", header=False, names=["movieId", "title", "genres"], encoding="latin-1", quoting=False, problems=problems)
    rows_read[scan.file] = scan.rows_read
    mc = TableCheck(scan, problems)
    ids = _check_items(mc, "movieId", "title")
    mv = scan.frame[mc.ok]
    items = pd.DataFrame({"id": ids[mc.ok].to_numpy(dtype=object), "title": mv["title"].str.strip().to_numpy(dtype=object)})
    items["year"] = _year_from_title(items["title"].astype("str")).array
    items["genres"] = _split_values(mv["genres"])
    known = pd.Index(items["id"])

    users = _read_optional_users(root / "users.dat", "::", ["id", "gender", "age", "occupation", "zip"], problems, rows_read)

    rs = scan_table(root / "ratings.dat", sep="::", header=False, names=["userId", "movieId", "rating", "timestamp"], encoding="latin-1", quoting=False, problems=problems)
    rows_read[rs.file] = rs.rows_read
    rdf = _check_ratings_with_users(TableCheck(rs, problems), known, users, 1.0, 5.0)
    return _finish(name, f"movielens-1m:{root}", items, rdf, None, users, problems, rows_read)


def read_movielens(path: str | os.PathLike[str] | None = None, fmt: MovieLensFormat | None = None, name: str = "movielens") -> DatasetFrames:
    """Read a MovieLens folder of any supported layout.

    Args:
        path: The folder; default: the bundled ml-latest-small.
        fmt: ``latest``, ``25m``, ``100k`` or ``1m``; default: detected from the files present.
        name: Dataset name in the graph (default ``movielens``).

    Raises:
        DataError: Missing folder or files, unknown format, unreadable header.
    """
    root = Path(path) if path is not None else BUNDLED_DIR
    if not root.is_dir():
        raise DataError(f"MovieLens folder {root} does not exist")
    fmt = fmt or detect_format(root)
    if fmt in ("latest", "25m"):
        return read_movielens_csv(root, name=name, fmt=fmt)
    if fmt == "100k":
        return read_movielens_100k(root, name=name)
    if fmt == "1m":
        return read_movielens_1m(root, name=name)
    raise DataError(f"unknown MovieLens format {fmt!r}; expected one of {', '.join(FORMATS)}")
