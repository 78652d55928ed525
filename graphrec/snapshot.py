"""The training-snapshot format: the one contract between ``graph/`` (writer) and ``gnn/`` (reader).

A snapshot is a folder::

    <dir>/manifest.json        format version, dataset, source, split, counts, content hash
    <dir>/users.parquet        one row per user; row position = user index
    <dir>/items.parquet        one row per item; row position = item index
    <dir>/interactions.parquet user_idx, item_idx, rating, timestamp, split

Columns:
    users: ``id`` (str).
    items: ``id`` (str), ``title`` (str), ``text`` (str, may be empty), ``year`` (Int64, may be null),
        ``genres``, ``tags``, ``categories``, ``brands`` (lists of str). Extra precomputed feature
        columns are named ``feat_<name>`` and hold equal-length lists of floats.
    interactions: ``user_idx`` (int32), ``item_idx`` (int32), ``rating`` (float32, NaN for implicit
        feedback), ``timestamp`` (int64 seconds, -1 when unknown), ``split`` (str: ``train``,
        ``val`` or ``test``).

Items without any interaction are kept (they are the cold-start catalogue), as are users
without interactions. Nothing here imports torch or neo4j.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from graphrec.clock import utc_now_iso
from graphrec.errors import SnapshotError
from graphrec.vocabulary import ATTRIBUTE_COLUMNS

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ITEM_COLUMNS = ("id", "title", "text", "year", *ATTRIBUTE_COLUMNS)
INTERACTION_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp", "split")


class SplitSpec(BaseModel):
    """How the interactions were divided into train / val / test."""

    name: str = Field(description="Split function name, e.g. 'fixed', 'per_user_random', 'per_user_temporal', 'leave_one_out'.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments the split function was called with.")


class SnapshotManifest(BaseModel):
    """The ``manifest.json`` of a snapshot."""

    format_version: int = FORMAT_VERSION
    dataset: str
    source: str = Field(description="Where the data came from: 'neo4j', 'lightgcn-files', ...")
    created_at: str
    split: SplitSpec
    counts: dict[str, int]
    hash: str = Field(description="sha256 of the snapshot's content (ids and interaction arrays).")


@dataclass
class Snapshot:
    """An in-memory snapshot. Build with :func:`make_snapshot`, persist with :func:`write_snapshot`."""

    manifest: SnapshotManifest
    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame

    def split_frame(self, split: str) -> pd.DataFrame:
        """Return the interactions of one split (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise SnapshotError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.interactions[self.interactions["split"] == split]


def _normalise_items(items: pd.DataFrame) -> pd.DataFrame:
    items = items.copy()
    if "id" not in items.columns:
        raise SnapshotError("items frame needs an 'id' column")
    items["id"] = items["id"].astype(str)
    for col in ("title", "text"):
        items[col] = items[col].fillna("").astype(str) if col in items.columns else ""
    items["year"] = items["year"].astype("Int64") if "year" in items.columns else pd.array([pd.NA] * len(items), dtype="Int64")
    for col in ATTRIBUTE_COLUMNS:
        if col not in items.columns:
            items[col] = [[] for _ in range(len(items))]
        else:
            items[col] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in items[col]]
    feats = [c for c in items.columns if c.startswith("feat_")]
    return items[list(ITEM_COLUMNS) + feats].reset_index(drop=True)


def _normalise_interactions(inter: pd.DataFrame, n_users: int, n_items: int) -> pd.DataFrame:
    missing = {"user_idx", "item_idx", "split"} - set(inter.columns)
    if missing:
        raise SnapshotError(f"interactions frame lacks columns {sorted(missing)}")
    out = pd.DataFrame(
        {
            "user_idx": inter["user_idx"].to_numpy(dtype=np.int32),
            "item_idx": inter["item_idx"].to_numpy(dtype=np.int32),
            "rating": (inter["rating"] if "rating" in inter else pd.Series(np.nan, index=inter.index)).to_numpy(dtype=np.float32),
            "timestamp": (inter["timestamp"] if "timestamp" in inter else pd.Series(-1, index=inter.index)).fillna(-1).to_numpy(dtype=np.int64),
            "split": inter["split"].astype(str).to_numpy(),
        }
    )
    bad_split = set(out["split"].unique()) - set(SPLITS)
    if bad_split:
        raise SnapshotError(f"unknown split labels {sorted(bad_split)}")
    if len(out) and (out["user_idx"].min() < 0 or out["user_idx"].max() >= n_users):
        raise SnapshotError("user_idx out of range of the users table")
    if len(out) and (out["item_idx"].min() < 0 or out["item_idx"].max() >= n_items):
        raise SnapshotError("item_idx out of range of the items table")
    return out


def content_hash(users: pd.DataFrame, items: pd.DataFrame, interactions: pd.DataFrame) -> str:
    """sha256 over user ids, item ids and the interaction arrays (order-sensitive)."""
    h = hashlib.sha256()
    h.update("\x1f".join(users["id"].astype(str)).encode())
    h.update(b"\x1e")
    h.update("\x1f".join(items["id"].astype(str)).encode())
    for col in ("user_idx", "item_idx", "rating", "timestamp"):
        h.update(np.ascontiguousarray(interactions[col].to_numpy()).tobytes())
    h.update("\x1f".join(interactions["split"]).encode())
    return h.hexdigest()


def make_snapshot(
    dataset: str,
    source: str,
    split: SplitSpec,
    users: pd.DataFrame,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
) -> Snapshot:
    """Validate and normalise frames into a :class:`Snapshot` (computes counts and hash).

    Args:
        dataset: Dataset name (e.g. ``movielens``).
        source: Provenance (``neo4j``, ``lightgcn-files``...).
        split: The split that produced the ``split`` column.
        users: Frame with an ``id`` column; row order defines user indices.
        items: Frame with at least ``id``; row order defines item indices.
        interactions: Frame with ``user_idx``, ``item_idx``, ``split`` and optionally ``rating``, ``timestamp``.

    Raises:
        SnapshotError: If the frames are inconsistent.
    """
    users = pd.DataFrame({"id": users["id"].astype(str).to_numpy()})
    items = _normalise_items(items)
    if users["id"].duplicated().any() or items["id"].duplicated().any():
        raise SnapshotError("duplicate user or item ids in snapshot")
    inter = _normalise_interactions(interactions, len(users), len(items))
    counts = {"users": len(users), "items": len(items), "interactions": len(inter)}
    counts.update({s: int((inter["split"] == s).sum()) for s in SPLITS})
    manifest = SnapshotManifest(
        dataset=dataset,
        source=source,
        created_at=utc_now_iso(),
        split=split,
        counts=counts,
        hash=content_hash(users, items, inter),
    )
    return Snapshot(manifest=manifest, users=users, items=items, interactions=inter)


def write_snapshot(snapshot: Snapshot, directory: str | os.PathLike[str]) -> Path:
    """Write a snapshot folder atomically (a temp folder renamed into place).

    Returns:
        The folder written.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        snapshot.users.to_parquet(tmp / "users.parquet", index=False)
        snapshot.items.to_parquet(tmp / "items.parquet", index=False)
        snapshot.interactions.to_parquet(tmp / "interactions.parquet", index=False)
        (tmp / "manifest.json").write_text(snapshot.manifest.model_dump_json(indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapshotError(f"cannot write snapshot to {target}: {e}") from e
    return target


def read_snapshot(directory: str | os.PathLike[str], verify: bool = True) -> Snapshot:
    """Read a snapshot folder.

    Args:
        directory: Folder written by :func:`write_snapshot`.
        verify: Recompute the content hash and compare with the manifest.

    Raises:
        SnapshotError: Missing files, unsupported version or hash mismatch.
    """
    root = Path(directory)
    try:
        manifest = SnapshotManifest.model_validate(json.loads((root / "manifest.json").read_text()))
        users = pd.read_parquet(root / "users.parquet")
        items = pd.read_parquet(root / "items.parquet")
        inter = pd.read_parquet(root / "interactions.parquet")
    except (OSError, ValueError) as e:
        raise SnapshotError(f"cannot read snapshot {root}: {e}") from e
    if manifest.format_version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot {root} has format {manifest.format_version}, this graphrec reads {FORMAT_VERSION}")
    for col in ATTRIBUTE_COLUMNS:
        items[col] = [list(v) if v is not None else [] for v in items[col]]
    if verify and content_hash(users, items, inter) != manifest.hash:
        raise SnapshotError(f"snapshot {root} content does not match its manifest hash")
    return Snapshot(manifest=manifest, users=users, items=items, interactions=inter)
