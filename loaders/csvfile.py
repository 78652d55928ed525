"""Reader for graphrec's generic CSV layout (three files, comma-separated, UTF-8, header row).

``users.csv`` (optional)
    ``id`` (or ``user_id``): the user id. Other columns are ignored.
``items.csv``
    ``id`` (or ``item_id``): the item id (required); ``title``; ``text`` (free text for the text
    encoder); ``year`` (integer); attribute columns ``genres``, ``tags``, ``categories``,
    ``brands`` (singular names ``genre``, ``tag``, ``category``, ``brand`` are accepted too) whose
    values are separated by ``|``. Every column except the id is optional.
``interactions.csv``
    ``user_id``, ``item_id`` (required); ``rating`` (optional number in
    ``[rating_min, rating_max]``; empty for implicit feedback); ``timestamp`` (optional integer
    seconds since the epoch); ``split`` (optional: ``train`` or ``test``).

Quoted fields may contain commas and newlines (RFC 4180). Rejected rows: bad encoding, wrong
column count, missing id, duplicate id (or duplicate ``(user_id, item_id)`` pair), unparsable or
out-of-range rating, unparsable timestamp, unknown split label, interaction with an unknown item,
and, when ``users.csv`` is given, with an unknown user.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.errors import DataError
from graphrec.frames import DatasetFrames, Problem, normalise_interactions, normalise_items
from graphrec.vocabulary import ATTRIBUTE_ALIASES, ATTRIBUTE_COLUMNS
from loaders.csvscan import scan_table
from loaders.validation import TableCheck

VALUE_SEPARATOR = "|"


def _id_column(frame: pd.DataFrame, path: Path, alias: str) -> str:
    for col in ("id", alias):
        if col in frame.columns:
            return col
    raise DataError(f"{path.name}: line 1: header needs an 'id' (or '{alias}') column; found {', '.join(map(str, frame.columns))}")


def _split_list(values: pd.Series) -> list[list[str]]:
    out: list[list[str]] = []
    for s in values.to_numpy(dtype=object):
        seen: dict[str, None] = {}
        for v in str(s).split(VALUE_SEPARATOR):
            v = v.strip()
            if v:
                seen.setdefault(v, None)
        out.append(list(seen))
    return out


def read_csv_dataset(
    items: str | os.PathLike[str],
    interactions: str | os.PathLike[str],
    users: str | os.PathLike[str] | None = None,
    name: str = "csv",
    rating_min: float = 0.0,
    rating_max: float = 5.0,
) -> DatasetFrames:
    """Read the generic CSV layout into :class:`DatasetFrames`.

    Args:
        items: Path of ``items.csv``.
        interactions: Path of ``interactions.csv``.
        users: Path of ``users.csv`` (optional; without it users are those seen in interactions).
        name: Dataset name in the graph.
        rating_min: Smallest valid rating (inclusive).
        rating_max: Largest valid rating (inclusive).

    Raises:
        DataError: A file is missing, unreadable or lacks a required header column.
    """
    if rating_min > rating_max:
        raise DataError(f"rating range is empty: min {rating_min} > max {rating_max}")
    problems: list[Problem] = []
    rows_read: dict[str, int] = {}

    users_df: pd.DataFrame | None = None
    if users is not None:
        up = Path(users)
        us = scan_table(up, problems=problems)
        rows_read[us.file] = us.rows_read
        uid_col = _id_column(us.frame, up, "user_id")
        uc = TableCheck(us, problems)
        uid = uc.require(uid_col, "user id")
        uc.unique([uid_col], [uid], "user id")
        users_df = pd.DataFrame({"id": uid[uc.ok].to_numpy(dtype=object)})

    ip = Path(items)
    it = scan_table(ip, problems=problems)
    rows_read[it.file] = it.rows_read
    iid_col = _id_column(it.frame, ip, "item_id")
    ic = TableCheck(it, problems)
    iid = ic.require(iid_col, "item id")
    ic.unique([iid_col], [iid], "item id")
    year = ic.number("year", integer=True, what="year") if ic.has("year") else None
    ok = ic.ok
    item_df = pd.DataFrame({"id": iid[ok].to_numpy(dtype=object)})
    item_df["title"] = ic.text("title")[ok].to_numpy(dtype=object)
    item_df["text"] = ic.text("text")[ok].to_numpy(dtype=object)
    if year is not None:
        item_df["year"] = year[ok].array
    for col in it.frame.columns:
        target = ATTRIBUTE_ALIASES.get(str(col), str(col))
        if target in ATTRIBUTE_COLUMNS:
            item_df[target] = _split_list(it.frame[col][ok])
    known_items = pd.Index(item_df["id"])

    xp = Path(interactions)
    xs = scan_table(xp, problems=problems)
    rows_read[xs.file] = xs.rows_read
    for col in ("user_id", "item_id"):
        if col not in xs.frame.columns:
            raise DataError(f"{xp.name}: line 1: header needs columns user_id and item_id; found {', '.join(map(str, xs.frame.columns))}")
    xc = TableCheck(xs, problems)
    xu = xc.require("user_id", "user id")
    xi = xc.require("item_id", "item id")
    rating = xc.number("rating", lo=rating_min, hi=rating_max, what="rating") if xc.has("rating") else pd.Series(np.full(len(xs.frame), np.nan))
    ts = xc.number("timestamp", integer=True, lo=0, what="timestamp") if xc.has("timestamp") else None
    split = None
    if xc.has("split"):
        split = xc.text("split").str.lower()
        bad = ~split.isin(["", "train", "test"]).to_numpy()
        if bad.any():
            xc.reject(bad, [f"unknown split {v!r} (expected train, test or empty)" for v in split.to_numpy(dtype=object)])
    xc.known(xi, known_items, "item")
    if users_df is not None:
        xc.known(xu, pd.Index(users_df["id"]), "user")
    xc.unique(["user_id", "item_id"], [xu, xi], "interaction (user_id, item_id)")
    ok = xc.ok
    inter = pd.DataFrame({"user_id": xu[ok].to_numpy(dtype=object), "item_id": xi[ok].to_numpy(dtype=object), "rating": rating[ok].to_numpy()})
    if ts is not None:
        inter["timestamp"] = ts[ok].array
    if split is not None:
        inter["split"] = [s or None for s in split[ok].to_numpy(dtype=object)]
    if users_df is None:
        uniq = pd.unique(inter["user_id"].to_numpy(dtype=object))
        users_df = pd.DataFrame({"id": np.asarray(uniq, dtype=object)})
    return DatasetFrames(
        name=name,
        source=f"csv:{ip.parent}",
        users=users_df,
        items=normalise_items(item_df),
        interactions=normalise_interactions(inter),
        problems=problems,
        rows_read=rows_read,
    )
