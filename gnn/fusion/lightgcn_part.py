r"""LightGCN in the live fused model: a user scored from their history's item embeddings.

A trained LightGCN with :math:`L` layers and layer weights :math:`\alpha_l` scores a pair as
:math:`\bar{\mathbf{e}}_u^\top \bar{\mathbf{e}}_i` with

.. math::
    \bar{\mathbf{e}}_u = \sum_{l=0}^{L} \alpha_l \mathbf{x}_u^{(l)}, \qquad
    \mathbf{x}_u^{(l+1)} = \sum_{j \in \mathcal{N}(u)} \frac{\mathbf{x}_j^{(l)}}{\sqrt{d_u d_j}}.

Every term but the user's own learned layer-0 vector :math:`\mathbf{x}_u^{(0)}` is a sum over the
user's history, so without it (a user whose history changed since the fit, or one the model never saw)

.. math::
    \bar{\mathbf{e}}_u \propto \sum_{j \in h} \mathbf{p}_j, \qquad
    \mathbf{p}_j = \frac{1}{\sqrt{d_j}} \sum_{l=0}^{L-1} \alpha_{l+1} \mathbf{x}_j^{(l)}

(the factor :math:`1/\sqrt{d_u}` only scales a user's scores, which the fusion weight absorbs). The
LightGCN part of a live form is therefore the low-rank term :math:`(\mathbf{h}\mathbf{P})\mathbf{Q}^\top`
with in-factors :math:`\mathbf{P}` (the :math:`\mathbf{p}_j`) and out-factors :math:`\mathbf{Q}` (the
final item embeddings :math:`\bar{\mathbf{e}}_i`): linear in the history, so serving computes it from the
graph at request time like the filter's own low-rank part. This is the inductive fold-in of the user
from their history's item embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gnn.checkpoint import Checkpoint, load_checkpoint
from gnn.data import InteractionData
from graphrec.errors import ModelError


@dataclass
class EmbeddingPart:
    """A low-rank part :math:`(\\mathbf{h}\\mathbf{P})\\mathbf{Q}^\\top` learned by an embedding model, row-aligned with a live form's items.

    Attributes:
        in_factors: :math:`\\mathbf{P}` ``(num_items, d)`` float32 (zero rows for items the model does not know).
        out_factors: :math:`\\mathbf{Q}` ``(num_items, d)`` float32.
        source: Where it came from (the checkpoint's model version).
        meta: The checkpoint's dataset, snapshot hash, best epoch and metrics.
    """

    in_factors: np.ndarray
    out_factors: np.ndarray
    source: str
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        if self.in_factors.shape != self.out_factors.shape or self.in_factors.ndim != 2:
            raise ModelError(f"in- and out-factors must both be (num_items, d), got {self.in_factors.shape} and {self.out_factors.shape}")

    @property
    def num_items(self) -> int:
        return int(self.in_factors.shape[0])

    def scores(self, history: Any) -> np.ndarray:
        """:math:`(\\mathbf{h}\\mathbf{P})\\mathbf{Q}^\\top` for history rows ``(B, num_items)`` (the dense reference)."""
        return np.asarray(history @ self.in_factors, dtype=np.float32) @ self.out_factors.T


def lightgcn_factors(checkpoint: Checkpoint | Any) -> tuple[np.ndarray, np.ndarray]:
    """In- and out-factors of a trained LightGCN (a checkpoint, or the model itself), in its item order
    (see the module docstring).

    Raises:
        ModelError: Not a LightGCN with its training graph.
    """
    model = checkpoint.model if isinstance(checkpoint, Checkpoint) else checkpoint
    lightgcn = getattr(model, "lightgcn", None)
    if lightgcn is None or not hasattr(model, "adjacency") or not hasattr(model, "train_items"):
        what = f"checkpoint {checkpoint.meta.version} is a {checkpoint.meta.model_type!r} model" if isinstance(checkpoint, Checkpoint) \
            else f"{type(model).__name__} is"
        raise ModelError(f"{what} not LightGCN")
    model.eval()
    with torch.no_grad():
        adj = model.adjacency()
        x = lightgcn.embedding.weight
        alpha = lightgcn.alpha.detach().cpu()
        inner = torch.zeros_like(x)
        for layer, conv in enumerate(lightgcn.convs):
            inner += float(alpha[layer + 1]) * x
            x = conv(x, adj)
        num_users = model.num_users
        degree = torch.bincount(model.train_items.cpu(), minlength=model.num_items).to(torch.float32)
        scale = torch.where(degree > 0, degree.clamp(min=1).rsqrt(), torch.zeros_like(degree))
        p = (inner[num_users:].cpu() * scale.unsqueeze(1)).numpy()
        _, q = model.embeddings()
    return np.ascontiguousarray(p, dtype=np.float32), np.ascontiguousarray(q.cpu().numpy(), dtype=np.float32)


def check_trained_on(checkpoint: Checkpoint, data: InteractionData) -> None:
    """Refuse a LightGCN that was not trained on exactly ``data``'s training part.

    The fusion weight of LightGCN is chosen on ``data``'s validation part; a model that saw any of
    those interactions (another split, another carving) would win that choice unfairly.

    Raises:
        ModelError: The checkpoint's training interactions differ from ``data.train``.
    """
    model = checkpoint.model
    if not hasattr(model, "train_users") or not hasattr(model, "train_items"):
        raise ModelError(f"checkpoint {checkpoint.meta.version} is a {checkpoint.meta.model_type!r} model, not LightGCN")
    users = {u: r for r, u in enumerate(data.users.ids)}
    items = {i: r for r, i in enumerate(data.items.ids)}
    cu = np.array([users.get(u, -1) for u in checkpoint.users.ids], dtype=np.int64)[model.train_users.cpu().numpy()]
    ci = np.array([items.get(i, -1) for i in checkpoint.items.ids], dtype=np.int64)[model.train_items.cpu().numpy()]
    ok = (cu >= 0) & (ci >= 0)
    theirs = np.unique(cu[ok] * data.num_items + ci[ok])
    ours = np.unique(data.train.users.numpy().astype(np.int64) * data.num_items + data.train.items.numpy().astype(np.int64))
    if not ok.all() or len(theirs) != len(ours) or not np.array_equal(theirs, ours):
        common = len(np.intersect1d(theirs, ours, assume_unique=True))
        raise ModelError(
            f"LightGCN checkpoint {checkpoint.meta.version} was trained on {len(theirs):,} interactions, {common:,} of them in this "
            f"training part of {len(ours):,}: train it with `graphrec train` on the same snapshot and split, so that the "
            "validation part the fusion weight is chosen on is one it never saw")


def lightgcn_part(checkpoint: str | os.PathLike[str] | Checkpoint, item_ids: list[str], *, training: InteractionData | None = None) -> EmbeddingPart:
    """The LightGCN part of a live form whose rows are ``item_ids``.

    Args:
        checkpoint: A LightGCN checkpoint folder, or one already loaded.
        item_ids: The live form's items, in row order (items the checkpoint does not know get zero rows).
        training: When given, the checkpoint must have been trained on exactly its training part
            (:func:`check_trained_on`).

    Raises:
        ModelError: Not a LightGCN, trained on other interactions, or sharing no item with ``item_ids``.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if training is not None:
        check_trained_on(ckpt, training)
    p, q = lightgcn_factors(ckpt)
    index = {i: r for r, i in enumerate(ckpt.items.ids)}
    rows = np.array([index.get(i, -1) for i in item_ids], dtype=np.int64)
    known = rows >= 0
    if not known.any():
        raise ModelError(f"LightGCN checkpoint {ckpt.meta.version} knows none of the {len(item_ids)} items")
    pin = np.zeros((len(item_ids), p.shape[1]), np.float32)
    qout = np.zeros_like(pin)
    pin[known], qout[known] = p[rows[known]], q[rows[known]]
    meta = {"dataset": ckpt.meta.dataset, "snapshot_hash": ckpt.meta.snapshot_hash, "version": ckpt.meta.version,
            "best_epoch": ckpt.meta.best_epoch, "val_metrics": dict(ckpt.meta.val_metrics), "test_metrics": dict(ckpt.meta.test_metrics),
            "items_known": int(known.sum()), "dim": int(p.shape[1])}
    return EmbeddingPart(in_factors=pin, out_factors=qout, source=ckpt.meta.version, meta=meta)


__all__ = ["EmbeddingPart", "check_trained_on", "lightgcn_factors", "lightgcn_part"]
