"""The in-memory form every reader produces: :class:`DatasetFrames`.

A contract of three packages: ``loaders`` produce it, ``graph`` writes it, ``gnn`` builds a
snapshot from it. It lives in ``graphrec`` so that none of them imports another for it.

Readers (MovieLens, LightGCN split files, generic CSV) turn files into four pandas frames with
*external string ids*, plus the list of rejected rows. Nothing here touches Neo4j or torch.

Frames and columns:
    users: ``id`` (str). Extra columns are allowed and ignored by the graph writer.
    items: ``id`` (str), ``title`` (str), ``text`` (str), ``year`` (Int64, nullable),
        ``genres``, ``tags``, ``categories``, ``brands`` (lists of str), optional ``feat_<name>``
        columns (lists of float).
    interactions: ``user_id`` (str), ``item_id`` (str), ``rating`` (float64, NaN for implicit
        feedback), ``timestamp`` (Int64, nullable, seconds), ``split`` (str ``train``/``test`` or
        None when the data came without a split).
    tag_applications: ``user_id`` (str), ``item_id`` (str), ``tag`` (str), ``timestamp`` (Int64).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from graphrec.vocabulary import ATTRIBUTE_COLUMNS

ITEM_COLUMNS: tuple[str, ...] = ("id", "title", "text", "year", *ATTRIBUTE_COLUMNS)
USER_COLUMNS: tuple[str, ...] = ("id",)
INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp", "split")
TAG_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "tag", "timestamp")


@dataclass(frozen=True)
class Problem:
    """One rejected input row.

    Attributes:
        file: File name (as given to the reader, usually the base name).
        line: 1-based physical line number in the file (0 when the problem concerns the whole file).
        reason: Human-readable reason (``missing id``, ``rating 7.0 out of range [0.5, 5.0]``...).
    """

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"

    def as_tuple(self) -> tuple[str, int, str]:
        """Return ``(file, line, reason)`` (the form :class:`graphrec.errors.ValidationFailedError` carries)."""
        return (self.file, self.line, self.reason)


def empty_users() -> pd.DataFrame:
    """An empty users frame with the canonical columns."""
    return pd.DataFrame({"id": pd.Series([], dtype=object)})


def empty_items() -> pd.DataFrame:
    """An empty items frame with the canonical columns."""
    return pd.DataFrame(
        {
            "id": pd.Series([], dtype=object),
            "title": pd.Series([], dtype=object),
            "text": pd.Series([], dtype=object),
            "year": pd.Series([], dtype="Int64"),
            **{c: pd.Series([], dtype=object) for c in ATTRIBUTE_COLUMNS},
        }
    )


def empty_interactions() -> pd.DataFrame:
    """An empty interactions frame with the canonical columns."""
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=object),
            "item_id": pd.Series([], dtype=object),
            "rating": pd.Series([], dtype="float64"),
            "timestamp": pd.Series([], dtype="Int64"),
            "split": pd.Series([], dtype=object),
        }
    )


def empty_tag_applications() -> pd.DataFrame:
    """An empty tag-applications frame with the canonical columns."""
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=object),
            "item_id": pd.Series([], dtype=object),
            "tag": pd.Series([], dtype=object),
            "timestamp": pd.Series([], dtype="Int64"),
        }
    )


def normalise_items(items: pd.DataFrame) -> pd.DataFrame:
    """Return ``items`` with every canonical column present and typed.

    Missing ``title``/``text`` become empty strings, a missing ``year`` becomes null, missing
    attribute columns become empty lists; ``feat_*`` columns are kept.
    """
    out = items.copy()
    n = len(out)
    out["id"] = out["id"].astype(str) if n else out["id"].astype(object)
    for col in ("title", "text"):
        out[col] = out[col].fillna("").astype(str) if col in out.columns else pd.Series([""] * n, index=out.index, dtype=object)
    if "year" in out.columns:
        out["year"] = pd.to_numeric(out["year"], errors="coerce").astype("Int64")
    else:
        out["year"] = pd.array([pd.NA] * n, dtype="Int64")
    for col in ATTRIBUTE_COLUMNS:
        if col not in out.columns:
            out[col] = pd.Series([[] for _ in range(n)], index=out.index, dtype=object)
        else:
            out[col] = pd.Series(
                [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in out[col]], index=out.index, dtype=object
            )
    feats = [c for c in out.columns if str(c).startswith("feat_")]
    return out[list(ITEM_COLUMNS) + feats].reset_index(drop=True)


def _as_str(values: pd.Series | np.ndarray, index: pd.Index) -> pd.Series:
    """Return ``values`` as a pandas string Series (no copy when it already is one)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, index=index)
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return series
    return series.astype("str")


def _split_labels(values: pd.Series) -> pd.Series:
    """Split labels as an object Series with None (not NaN) where there is no label."""
    out = values.astype(object)
    return out.where(out.notna(), None)


def normalise_interactions(inter: pd.DataFrame) -> pd.DataFrame:
    """Return ``inter`` with the canonical columns and dtypes (adds NaN ratings, null timestamps, None split)."""
    idx = pd.RangeIndex(len(inter))
    inter = inter.reset_index(drop=True)
    return pd.DataFrame(
        {
            "user_id": _as_str(inter["user_id"], idx),
            "item_id": _as_str(inter["item_id"], idx),
            "rating": inter["rating"].astype("float64") if "rating" in inter else pd.Series(np.nan, index=idx),
            "timestamp": inter["timestamp"].astype("Int64") if "timestamp" in inter else pd.Series(pd.NA, index=idx, dtype="Int64"),
            "split": _split_labels(inter["split"]) if "split" in inter else pd.Series(None, index=idx, dtype=object),
        }
    )


@dataclass
class DatasetFrames:
    """A dataset read from files, validated, ready to be written to the graph or trained on.

    Attributes:
        name: Dataset name used in the graph (``movielens``, ``gowalla``...).
        source: Human-readable provenance (``ml-latest-small``, ``lightgcn:/path``...).
        users: One row per user (column ``id``).
        items: One row per item (see module docstring for the columns).
        interactions: One row per user-item interaction.
        tag_applications: One row per tag a user applied to an item (MovieLens tags; may be empty).
        problems: Every rejected row, with file, line and reason.
        rows_read: Data rows read per file name (header lines not counted).
    """

    name: str
    source: str
    users: pd.DataFrame = field(default_factory=empty_users)
    items: pd.DataFrame = field(default_factory=empty_items)
    interactions: pd.DataFrame = field(default_factory=empty_interactions)
    tag_applications: pd.DataFrame = field(default_factory=empty_tag_applications)
    problems: list[Problem] = field(default_factory=list)
    rows_read: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Row counts of the four frames."""
        return {
            "users": len(self.users),
            "items": len(self.items),
            "interactions": len(self.interactions),
            "tag_applications": len(self.tag_applications),
        }

    def attribute_values(self, column: str) -> list[str]:
        """Sorted distinct values of one list-valued item attribute column (e.g. ``genres``)."""
        if column not in ATTRIBUTE_COLUMNS:
            raise ValueError(f"unknown attribute column {column!r}; expected one of {ATTRIBUTE_COLUMNS}")
        values = self.items[column].explode().dropna()
        return sorted(set(values.astype(str)))
