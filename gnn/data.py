"""What the trainer and evaluator read: a snapshot's interactions as index tensors per split.

``gnn/`` reads snapshots only (never Neo4j). :func:`snapshot_from_frames` turns a loader's
:class:`graphrec.frames.DatasetFrames` (e.g. LightGCN files) into a snapshot without a graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from graphrec.errors import DataError, UnknownItemError, UnknownUserError
from graphrec.snapshot import Snapshot, SplitSpec, make_snapshot
from graphrec.splits import apply_split
from gnn.vocab import Vocabulary

if TYPE_CHECKING:
    from graphrec.frames import DatasetFrames


@dataclass
class SplitPart:
    """The (user, item) index pairs of one split part (int64 tensors on the CPU)."""

    users: Tensor
    items: Tensor

    def __len__(self) -> int:
        return int(self.users.numel())


@dataclass
class InteractionData:
    """Interactions of a snapshot, ready for training and evaluation.

    Attributes:
        dataset: Dataset name.
        snapshot_hash: The snapshot's content hash (recorded in checkpoints).
        users: User vocabulary (external ids <-> indices).
        items: Item vocabulary.
        train / val / test: Index pairs per split part.
    """

    dataset: str
    snapshot_hash: str
    users: Vocabulary
    items: Vocabulary
    train: SplitPart
    val: SplitPart
    test: SplitPart

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def part(self, name: str) -> SplitPart:
        """``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split part {name!r}")
        return getattr(self, name)

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> InteractionData:
        """Build from an in-memory snapshot (duplicates within a part are kept once)."""
        inter = snapshot.interactions
        parts = {}
        for name in ("train", "val", "test"):
            frame = inter[inter["split"] == name]
            key = np.unique(frame["user_idx"].to_numpy(np.int64) * max(len(snapshot.items), 1) + frame["item_idx"].to_numpy(np.int64))
            n_items = max(len(snapshot.items), 1)
            parts[name] = SplitPart(torch.from_numpy(key // n_items), torch.from_numpy(key % n_items))
        return cls(
            dataset=snapshot.manifest.dataset,
            snapshot_hash=snapshot.manifest.hash,
            users=Vocabulary(snapshot.users["id"], kind="user", not_found=UnknownUserError),
            items=Vocabulary(snapshot.items["id"], kind="item", not_found=UnknownItemError),
            **parts,
        )


def snapshot_from_frames(frames: DatasetFrames, split: SplitSpec, seed: int = 0, source: str | None = None) -> Snapshot:
    """Index a loader's frames, apply a named split and build a :class:`Snapshot`.

    Args:
        frames: Users, items and interactions with external string ids (interactions may carry the
            data's own ``split``, which the ``fixed`` split keeps).
        split: The named split to apply (see :mod:`graphrec.splits`).
        seed: Seed of the split.
        source: Provenance written into the manifest (default: ``frames.source``).

    Raises:
        DataError: Interactions reference unknown users or items.
    """
    users = frames.users.reset_index(drop=True)
    items = frames.items.reset_index(drop=True)
    inter = frames.interactions
    u_idx = pd.Index(users["id"].astype(str)).get_indexer(inter["user_id"].astype(str))
    i_idx = pd.Index(items["id"].astype(str)).get_indexer(inter["item_id"].astype(str))
    if (u_idx < 0).any() or (i_idx < 0).any():
        raise DataError("interactions reference users or items missing from the users / items frames")
    df = pd.DataFrame(
        {
            "user_idx": u_idx.astype(np.int64),
            "item_idx": i_idx.astype(np.int64),
            "rating": inter["rating"].to_numpy(dtype=np.float32, na_value=np.nan) if "rating" in inter else np.nan,
            "timestamp": inter["timestamp"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64) if "timestamp" in inter else -1,
        }
    )
    if "split" in inter.columns and inter["split"].notna().all():
        df["split"] = inter["split"].astype(str).to_numpy()
    spec = SplitSpec(name=split.name, params={**split.params, "seed": seed})
    df = apply_split(df, spec, seed=seed)
    return make_snapshot(frames.name, source or frames.source, spec, users, items, df)
