r"""GF-CF: a linear item-item filter plus an ideal low-pass filter (Shen et al., CIKM 2021), optionally
sharpened by one explicit step of the inverse heat equation on the item-item graph (BSPM, Choi et al., SIGIR 2023)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.filters.base import DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.filters.normalise import ItemGraph
from gnn.models import register_model


@register_model("gfcf")
class GFCF(GraphFilter):
    r"""GF-CF from `"How Powerful is Graph Convolution for Recommendation?"
    <https://arxiv.org/abs/2108.07567>`_ (Shen et al., CIKM 2021): the normalised item-item graph
    (LightGCN's linear filter in closed form) plus an ideal low-pass filter from the top singular
    vectors of the normalised interaction matrix, followed by an optional sharpening step
    (`"Blurring-Sharpening Process Models for Collaborative Filtering"
    <https://arxiv.org/abs/2211.09324>`_, Choi et al., SIGIR 2023: one explicit step of order
    :math:`m` of :math:`d\mathbf{x}/dt = -\mathbf{x}\tilde{\mathbf{P}}` over time :math:`T`; Euler is
    :math:`m = 1`, the classical Runge-Kutta step :math:`m = 4`).

    .. math::
        \mathbf{s}_u = \Bigl(\mathbf{r}_u \tilde{\mathbf{P}}
          + \alpha \, \mathbf{r}_u \mathbf{D}_I^{-\beta} \mathbf{V} \mathbf{V}^\top \mathbf{D}_I^{\beta}\Bigr)
          \mathbf{S}, \qquad \mathbf{S} = \sum_{k=0}^{m} \frac{(-T\tilde{\mathbf{P}})^k}{k!},
        \qquad \tilde{\mathbf{P}} = \tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}, \quad
        \tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}

    with :math:`\mathbf{V} \in \mathbb{R}^{I \times r}` the top-:math:`r` right singular vectors of
    :math:`\tilde{\mathbf{R}}` (randomized SVD, sparse products only). :math:`T = 0` is GF-CF. The
    item-item part :math:`\tilde{\mathbf{P}}\mathbf{S}` is never built densely: a block of history
    rows is filtered as :math:`(\mathbf{X}\tilde{\mathbf{R}}^\top)\tilde{\mathbf{R}}`, then
    :math:`m` times more for the sharpening. The sharpened low-pass part stays low-rank: its
    out-factors are :math:`\mathbf{S}\mathbf{D}_I^{\beta}\mathbf{V}`, computed once at fit time.

    Memory (float32): fitted state :math:`36N + 8Ir` bytes (interaction CSRs, the basis and the
    sharpened out-factors), plus :math:`12 I k` bytes for ``neighbours_top_k`` :math:`= k`; scoring
    a block of :math:`B` users needs :math:`4B(U + 3I)` bytes. Time: :math:`O(N r q)` for the SVD,
    :math:`O(N B)` per block (:math:`m + 1` times that with :math:`T > 0`).

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        alpha (float, optional): Weight :math:`\alpha` of the ideal low-pass filter. (default: ``0.3``)
        rank (int, optional): Rank :math:`r` of the ideal low-pass filter. (default: ``256``)
        power (float, optional): Degree exponent :math:`\beta` around the low-pass filter. (default: ``0.5``)
        sharpen (float, optional): Sharpening time :math:`T`; ``0`` is plain GF-CF. (default: ``0.0``)
        sharpen_order (int, optional): Order :math:`m` of the sharpening step (``1``: Euler,
            ``4``: Runge-Kutta, BSPM's Gowalla recipe with :math:`T = 2.5`). (default: ``1``)
        neighbours_top_k (int, optional): Item-item weights kept per item, scored with the truncated
            matrix; ``None``: exact. (default: ``100``)
        batch_users (int, optional): Items per block when computing neighbours. (default: ``1024``)
        correction_rank (int, optional): Rank of the low-rank correction of the cut item-item part
            (:mod:`gnn.filters.base`); ``0``: none. (default: ``0``)
        factor_rank (int, optional): With a correction, the rank of the whole served low-rank part;
            ``None``: ``correction_rank``. (default: ``None``)

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
        sharpen: float = 0.0,
        sharpen_order: int = 1,
        neighbours_top_k: int | None = DEFAULT_NEIGHBOURS_TOP_K,
        batch_users: int = 1024,
        correction_rank: int = 0,
        factor_rank: int | None = None,
    ) -> None:
        super().__init__(num_users, num_items, neighbours_top_k, batch_users, correction_rank, factor_rank)
        if rank < 0:
            raise ModelError("rank must be >= 0")
        if sharpen < 0:
            raise ModelError("sharpen must be >= 0")
        if sharpen_order < 1:
            raise ModelError("sharpen_order must be >= 1")
        self.alpha, self.rank, self.power, self.sharpen = float(alpha), int(rank), float(power), float(sharpen)
        self.sharpen_order = int(sharpen_order)
        self.init_kwargs.update(alpha=self.alpha, rank=self.rank, power=self.power, sharpen=self.sharpen, sharpen_order=self.sharpen_order)
        self.register_buffer("sharp_out", torch.zeros(num_items, 0))

    def _resizable_buffers(self) -> tuple[str, ...]:
        return (*super()._resizable_buffers(), "sharp_out")

    def sharpened(self, x: Tensor, propagate: Callable[[Tensor], Tensor]) -> Tensor:
        r""":math:`\sum_{k=0}^{m} (-T)^k / k! \; \tilde{\mathbf{P}}^k \mathbf{x}` with ``propagate`` applying
        :math:`\tilde{\mathbf{P}}` (on rows or on transposed columns); ``x`` itself when :math:`T = 0`."""
        if not self.sharpen:
            return x
        out, term = x.clone(), x
        for k in range(1, self.sharpen_order + 1):
            term = propagate(term) * (-self.sharpen / k)
            out += term
        return out

    def apply_linear(self, x: Tensor) -> Tensor:
        graph = self.graph()
        return self.sharpened(graph.propagate(x), graph.propagate)

    @torch.no_grad()
    def fit_low_pass(self, graph: ItemGraph) -> None:
        self.sharp_out = torch.zeros(self.num_items, 0, device=self.item_degree.device)
        f = super().factors()
        if self.sharpen and f is not None:
            self.sharp_out = self.sharpened(f[1], graph.propagate_t)

    def factors(self) -> tuple[Tensor, Tensor] | None:
        r"""In / out factors; with sharpening the out-factors are :math:`\mathbf{S}\mathbf{D}_I^{\beta}\mathbf{V}`."""
        f = super().factors()
        if f is None or not self.sharpen:
            return f
        if self.sharp_out.shape[1] != f[1].shape[1]:
            raise ModelError("the sharpened factors are missing: fit the model first")
        return f[0], self.sharp_out

    @torch.no_grad()
    def linear_rows(self, items: Tensor) -> Tensor:
        r"""Rows of the item-item part: on the CPU, rows of :math:`\tilde{\mathbf{P}}` from one
        sparse-sparse product of the items' columns of :math:`\tilde{\mathbf{R}}` (much cheaper than
        filtering one-hot rows), then the sharpening step on them; elsewhere the generic dense path."""
        graph = self.graph()
        if graph.device.type != "cpu":
            return super().linear_rows(items)
        rt = graph.norm_t
        m = sp.csr_matrix((rt.values().numpy(), rt.col_indices().numpy(), rt.crow_indices().numpy()), shape=tuple(rt.shape))
        n = sp.csr_matrix(m.T)
        block = torch.from_numpy(np.asarray((m[items.cpu().numpy()] @ n).todense(), dtype=np.float32))
        return self.sharpened(block, graph.propagate)
