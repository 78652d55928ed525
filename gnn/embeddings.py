"""Export a checkpoint's final user / item embeddings for the serving side (vectors into Neo4j)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graphrec.errors import ModelError
from gnn.checkpoint import Checkpoint, load_checkpoint
from gnn.models import RecModel


@dataclass
class EmbeddingSet:
    """Final embeddings of one model version, with external ids.

    Attributes:
        model_version: The checkpoint's version string.
        user_ids / item_ids: External ids, row-aligned with the vectors.
        user_vectors / item_vectors: float32 arrays ``(n, dim)``; the score of (u, i) is their dot product.
        metadata: dataset, model type, snapshot hash, dim, validation metrics...
    """

    model_version: str
    user_ids: list[str]
    user_vectors: np.ndarray
    item_ids: list[str]
    item_vectors: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])


def export_embeddings(checkpoint: str | os.PathLike[str] | Checkpoint) -> EmbeddingSet:
    """Compute the final (propagated) embeddings of a checkpoint's model.

    Args:
        checkpoint: A checkpoint folder / file, or an already loaded :class:`Checkpoint`.

    Raises:
        ModelError: The checkpoint is not an embedding model (e.g. a MostPopular baseline).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    model = ckpt.model
    if not isinstance(model, RecModel):
        raise ModelError(f"model type {ckpt.meta.model_type!r} has no embeddings to export")
    model.eval()
    with torch.no_grad():
        u, i = model.embeddings()
    user_vectors = np.ascontiguousarray(u.detach().cpu().numpy(), dtype=np.float32)
    item_vectors = np.ascontiguousarray(i.detach().cpu().numpy(), dtype=np.float32)
    meta = {
        "dataset": ckpt.meta.dataset,
        "model_type": ckpt.meta.model_type,
        "snapshot_hash": ckpt.meta.snapshot_hash,
        "dim": int(item_vectors.shape[1]),
        "created_at": ckpt.meta.created_at,
        "val_metrics": dict(ckpt.meta.val_metrics),
        "test_metrics": dict(ckpt.meta.test_metrics),
        "similarity": getattr(model, "similarity", "dot"),
    }
    return EmbeddingSet(
        model_version=ckpt.meta.version,
        user_ids=ckpt.users.ids,
        user_vectors=user_vectors,
        item_ids=ckpt.items.ids,
        item_vectors=item_vectors,
        metadata=meta,
    )
