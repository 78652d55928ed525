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


def fold_in(user_vector: np.ndarray, liked: np.ndarray, n_before: int) -> np.ndarray:
    r"""A known user's vector with the items they liked since the model was fitted folded in.

    The stored vector :math:`\mathbf{u}` stands for the :math:`n` items the user liked when the model
    was fitted, each newly liked item :math:`\mathbf{v}_j` for one more; the direction is their
    count-weighted mean and the length stays :math:`\lVert \mathbf{u} \rVert` (so per-user score
    statistics still apply):

    .. math::
        \mathbf{d} = n \frac{\mathbf{u}}{\lVert \mathbf{u} \rVert}
            + \sum_j \frac{\mathbf{v}_j}{\lVert \mathbf{v}_j \rVert},
        \qquad
        \mathbf{u}' = \lVert \mathbf{u} \rVert \frac{\mathbf{d}}{\lVert \mathbf{d} \rVert}

    Serving computes the same in Cypher (``graph.recommend.USER_VECTOR``) on the raw (not
    MIPS-augmented) vectors; the integration tests check the two agree.

    Args:
        user_vector (np.ndarray): The stored user vector :math:`(d,)`.
        liked (np.ndarray): Vectors of the items liked since the fit :math:`(m, d)` (zero vectors are skipped).
        n_before (int): Items the user had liked when the model was fitted.

    Returns:
        The folded vector :math:`(d,)` (``user_vector`` itself when nothing is folded in).
    """
    u = np.asarray(user_vector, dtype=np.float64)
    v = np.asarray(liked, dtype=np.float64).reshape(-1, u.shape[0])
    norms = np.linalg.norm(v, axis=1)
    v, norms = v[norms > 0], norms[norms > 0]
    un = float(np.linalg.norm(u))
    if not len(v) or un == 0.0:
        return u
    d = n_before * u / un + (v / norms[:, None]).sum(axis=0)
    dn = float(np.linalg.norm(d))
    return u if dn == 0.0 else d * (un / dn)

