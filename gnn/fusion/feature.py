r"""Feature-level fusion: LightGCN whose item layer-0 embedding adds learned projections of frozen
item feature vectors (BERT text vectors, and any precomputed ``feat_*`` columns such as image
embeddings), trained end to end with the same BPR trainer as plain LightGCN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.nn.models import LightGCN

from graphrec.errors import ModelError
from gnn.models import BatchEmbeddings, RecModel, init_id_embeddings, register_model
from gnn.propagation import propagate, propagate_rows


@register_model("lightgcn_fused")
class FusedLightGCN(RecModel):
    r"""LightGCN (He et al., SIGIR 2020, `arXiv:2002.02126 <https://arxiv.org/abs/2002.02126>`_) with
    feature-level fusion of frozen item feature vectors into the layer-0 item representation, in
    the spirit of content-aware graph recommenders (e.g. Wang et al., "KGAT"; Zhang et al.,
    "Content-aware GCN"), using PyG's :class:`~torch_geometric.nn.models.LightGCN` layers.

    .. math::
        \mathbf{e}^{(0)}_u = \mathbf{w}_u, \qquad
        \mathbf{e}^{(0)}_i = \mathbf{w}_i + \sum_{k} \mathbf{P}_k \mathbf{f}^{(k)}_i

        \mathbf{e}^{(l+1)} = D^{-1/2} A D^{-1/2}\, \mathbf{e}^{(l)}, \qquad
        \mathbf{e} = \sum_{l=0}^{L} \alpha_l \mathbf{e}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i

    where :math:`\mathbf{w}` are the ID embeddings, :math:`\mathbf{f}^{(k)}_i` the frozen feature
    vectors of item :math:`i` (text vector, image vector...) and :math:`\mathbf{P}_k` learned linear
    projections. Features are buffers (set with :meth:`set_features`), so ``.to(device)`` and
    checkpoints carry them.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        feature_dims (list[int]): Dimension of each feature block (e.g. ``[384]`` for MiniLM text).
        feature_names (list[str], optional): Name of each block (``text``, ``feat_image``...).
            (default: ``["f0", "f1", ...]``)
        embedding_dim (int, optional): Embedding size. (default: ``64``)
        num_layers (int, optional): Propagation layers. (default: ``3``)
        init_std (float, optional): Std of the normal init of the ID embeddings; ``None``: Xavier
            per table (:func:`gnn.models.init_id_embeddings`). (default: ``0.1``)
        id_dropout (float, optional): During training, the ID embedding of each item is zeroed
            with this probability (per forward pass), which makes the projections carry
            collaborative signal on their own (DropoutNet-style; helps cold items). (default: ``0.0``)

    Shapes:
        - **embeddings():** :math:`(U, d)`, :math:`(I, d)`
        - **forward:** users :math:`(B,)`, items :math:`(B,)` -> :math:`(B,)`
        - **project(features):** list of :math:`(N, F_k)` -> :math:`(N, d)`
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Sequence[int],
        feature_names: Sequence[str] | None = None,
        embedding_dim: int = 64,
        num_layers: int = 3,
        init_std: float | None = 0.1,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items)
        feature_dims = [int(d) for d in feature_dims]
        if not feature_dims or any(d <= 0 for d in feature_dims):
            raise ModelError(f"feature_dims must be a non-empty list of positive ints, got {feature_dims}")
        names = list(feature_names) if feature_names is not None else [f"f{k}" for k in range(len(feature_dims))]
        if len(names) != len(feature_dims):
            raise ModelError("feature_names and feature_dims differ in length")
        if not 0.0 <= id_dropout < 1.0:
            raise ModelError(f"id_dropout must be in [0, 1), got {id_dropout}")
        self.init_kwargs.update(
            feature_dims=feature_dims, feature_names=names, embedding_dim=embedding_dim,
            num_layers=num_layers, init_std=init_std, id_dropout=id_dropout,
        )
        self.feature_dims = feature_dims
        self.feature_names = names
        self.embedding_dim = embedding_dim
        self.init_std = init_std
        self.id_dropout = id_dropout
        self.lightgcn = LightGCN(num_users + num_items, embedding_dim, num_layers, normalize=False)
        self.projections = torch.nn.ModuleList([torch.nn.Linear(d, embedding_dim, bias=False) for d in feature_dims])
        for k, d in enumerate(feature_dims):
            self.register_buffer(f"features_{k}", torch.zeros(num_items, d))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ID embeddings (:func:`gnn.models.init_id_embeddings`) and projections (Xavier)."""
        self.lightgcn.reset_parameters()
        init_id_embeddings(self.lightgcn.embedding.weight, self.num_users, self.init_std)
        for p in self.projections:
            torch.nn.init.xavier_uniform_(p.weight)

    def set_features(self, features: Sequence[np.ndarray | Tensor]) -> None:
        """Set the frozen feature blocks (one ``(num_items, F_k)`` array per block, in ``feature_dims`` order).

        Raises:
            ModelError: On a shape mismatch.
        """
        if len(features) != len(self.feature_dims):
            raise ModelError(f"expected {len(self.feature_dims)} feature blocks, got {len(features)}")
        for k, f in enumerate(features):
            cur = getattr(self, f"features_{k}")
            t = torch.as_tensor(np.asarray(f, dtype=np.float32) if not isinstance(f, Tensor) else f, dtype=torch.float32)
            if tuple(t.shape) != tuple(cur.shape):
                raise ModelError(f"feature block {self.feature_names[k]} has shape {tuple(t.shape)}, expected {tuple(cur.shape)}")
            setattr(self, f"features_{k}", t.to(cur.device))

    def features(self) -> list[Tensor]:
        """The feature blocks (buffers)."""
        return [getattr(self, f"features_{k}") for k in range(len(self.feature_dims))]

    def project(self, features: Sequence[Tensor]) -> Tensor:
        r"""The fused part of the layer-0 item embedding, :math:`\sum_k \mathbf{P}_k \mathbf{f}^{(k)}`."""
        out = None
        for proj, f in zip(self.projections, features):
            y = proj(f.to(proj.weight.device, torch.float32))
            out = y if out is None else out + y
        assert out is not None
        return out

    def projected_items(self) -> Tensor:
        r"""The fused part of every item, :math:`\sum_k \mathbf{P}_k \mathbf{f}^{(k)}_i` (``(I, d)``)."""
        return self.project(self.features())

    def _item_x0(self, projected: Tensor) -> Tensor:
        w = self.lightgcn.embedding.weight[self.num_users :]
        if self.training and self.id_dropout > 0:
            keep = (torch.rand(self.num_items, 1, device=w.device) >= self.id_dropout).to(w.dtype)
            w = w * keep
        return w + projected

    def x0(self, projected: Tensor | None = None) -> Tensor:
        """Layer-0 embeddings of all nodes (users first); ``projected`` reuses a :meth:`projected_items`."""
        if projected is None:
            projected = self.projected_items()
        return torch.cat([self.lightgcn.embedding.weight[: self.num_users], self._item_x0(projected)])

    def embeddings(self) -> tuple[Tensor, Tensor]:
        out = propagate(self.lightgcn, self.x0(), self.adjacency())
        return out[: self.num_users], out[self.num_users :]

    def ego(self, users: Tensor, items: Tensor, projected: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w = self.lightgcn.embedding.weight
        if projected is None:
            projected = self.projected_items()
        return w[users], w[items + self.num_users] + projected[items]

    def batch_embeddings(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchEmbeddings:
        # one projection of the catalogue per step, shared by the propagation and the L2 term
        projected = self.projected_items()
        offset = self.num_users
        finals, _ = propagate_rows(
            self.lightgcn, self.x0(projected), self.adjacency(), (users, pos + offset, neg + offset), with_ego=False
        )
        u0, p0 = self.ego(users, pos, projected)
        _, n0 = self.ego(users, neg, projected)
        return BatchEmbeddings(*finals, u0, p0, n0)

    def _resizable_buffers(self) -> tuple[str, ...]:
        return (*super()._resizable_buffers(), *(f"features_{k}" for k in range(len(self.feature_dims))))
