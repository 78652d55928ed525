r"""GF-CF: a linear item-item filter plus an ideal low-pass filter (Shen et al., CIKM 2021)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.filters.base import DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.models import register_model


@register_model("gfcf")
class GFCF(GraphFilter):
    r"""GF-CF from `"How Powerful is Graph Convolution for Recommendation?"
    <https://arxiv.org/abs/2108.07567>`_ (Shen et al., CIKM 2021): the normalised item-item graph
    (LightGCN's linear filter in closed form) plus an ideal low-pass filter from the top singular
    vectors of the normalised interaction matrix.

    .. math::
        \mathbf{s}_u = \mathbf{r}_u \tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}
          + \alpha \, \mathbf{r}_u \mathbf{D}_I^{-\beta} \mathbf{V} \mathbf{V}^\top \mathbf{D}_I^{\beta},
        \qquad \tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}

    with :math:`\mathbf{V} \in \mathbb{R}^{I \times r}` the top-:math:`r` right singular vectors of
    :math:`\tilde{\mathbf{R}}` (randomized SVD, sparse products only). The item-item part is never
    built densely: a block of history rows is filtered as :math:`(\mathbf{X}\tilde{\mathbf{R}}^\top)
    \tilde{\mathbf{R}}`.

    Memory (float32): fitted state :math:`36N + 4Ir` bytes (interaction CSRs and the basis), plus
    :math:`12 I k` bytes for ``neighbours_top_k`` :math:`= k`; scoring a block of :math:`B` users
    needs :math:`4B(U + 2I)` bytes. Time: :math:`O(N r q)` for the SVD, :math:`O(N B)` per block.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        alpha (float, optional): Weight :math:`\alpha` of the ideal low-pass filter. (default: ``0.3``)
        rank (int, optional): Rank :math:`r` of the ideal low-pass filter. (default: ``256``)
        power (float, optional): Degree exponent :math:`\beta` around the low-pass filter. (default: ``0.5``)
        neighbours_top_k (int, optional): Item-item weights kept per item, scored with the truncated
            matrix; ``None``: exact. (default: ``100``)
        batch_users (int, optional): Items per block when computing neighbours. (default: ``1024``)

    Shapes:
        - **scorer:** users :math:`(B,)` -> scores :math:`(B, I)`
        - **live_form(k):** neighbours :math:`(I, I)` with :math:`\le k` per row, factors :math:`(I, r)`
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        alpha: float = 0.3,
        rank: int = 256,
        power: float = 0.5,
        neighbours_top_k: int | None = DEFAULT_NEIGHBOURS_TOP_K,
        batch_users: int = 1024,
    ) -> None:
        super().__init__(num_users, num_items, neighbours_top_k, batch_users)
        if rank < 0:
            raise ModelError("rank must be >= 0")
        self.alpha, self.rank, self.power = float(alpha), int(rank), float(power)
        self.init_kwargs.update(alpha=self.alpha, rank=self.rank, power=self.power)

    def apply_linear(self, x: Tensor) -> Tensor:
        return self.graph().propagate(x)

    @torch.no_grad()
    def linear_rows(self, items: Tensor) -> Tensor:
        r"""Rows of :math:`\tilde{\mathbf{R}}^\top\tilde{\mathbf{R}}`: on the CPU one sparse-sparse
        product of the items' columns of :math:`\tilde{\mathbf{R}}` (much cheaper than filtering
        one-hot rows); elsewhere the generic dense path."""
        graph = self.graph()
        if graph.device.type != "cpu":
            return super().linear_rows(items)
        rt = graph.norm_t
        m = sp.csr_matrix((rt.values().numpy(), rt.col_indices().numpy(), rt.crow_indices().numpy()), shape=tuple(rt.shape))
        n = sp.csr_matrix(m.T)
        block = m[items.cpu().numpy()] @ n
        return torch.from_numpy(np.asarray(block.todense(), dtype=np.float32))
