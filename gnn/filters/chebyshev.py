r"""A Chebyshev-interpolated spectral filter of the item-item graph (the ChebyCF kind, Kim et al., SIGIR 2025)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.filters.base import DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.filters.normalise import ItemGraph, degree_power
from gnn.models import register_model


def plateau(x: Tensor, flatness: float) -> Tensor:
    r"""The target low-pass response on the rescaled spectrum :math:`x = 1 - 2\mu \in [-1, 1]`:
    :math:`g(x) = \tfrac12 - \tfrac12 \operatorname{sign}(x) |x|^{\phi}`.

    :math:`g(-1) = 1` (the smoothest signals, :math:`\mu = 1`), :math:`g(1) = 0`; :math:`\phi = 1`
    is the linear filter :math:`g = \mu`, larger :math:`\phi` flattens the middle of the spectrum
    towards :math:`\tfrac12`, smaller :math:`\phi` approaches an ideal step at :math:`\mu = \tfrac12`.
    """
    return 0.5 - 0.5 * torch.sign(x) * x.abs().pow(flatness)


def chebyshev_coefficients(order: int, flatness: float) -> Tensor:
    r"""Coefficients :math:`c_0..c_K` of the degree-:math:`K` Chebyshev interpolant of
    :func:`plateau` at the Chebyshev-Gauss nodes :math:`x_j = \cos\frac{(j + 1/2)\pi}{K + 1}`:

    .. math::
        c_k = \frac{2 - [k = 0]}{K + 1} \sum_{j=0}^{K} g(x_j) \, T_k(x_j)
    """
    if order < 0:
        raise ModelError("order must be >= 0")
    j = torch.arange(order + 1, dtype=torch.float64)
    nodes = torch.cos((j + 0.5) * math.pi / (order + 1))
    target = plateau(nodes, flatness)
    k = torch.arange(order + 1, dtype=torch.float64)
    t = torch.cos(k.unsqueeze(1) * torch.arccos(nodes).unsqueeze(0))  # T_k(x_j)
    c = (2.0 / (order + 1)) * (t * target.unsqueeze(0)).sum(1)
    c[0] /= 2
    return c


def chebyshev_filter_t(graph: ItemGraph, xt: Tensor, coefficients: Tensor) -> list[Tensor]:
    r"""Apply :math:`\sum_k c_k T_k(\tilde{\mathbf{L}})`, :math:`\tilde{\mathbf{L}} = \mathbf{I} - 2\tilde{\mathbf{P}}`,
    to transposed signals ``(I, B)`` for several coefficient vectors at once.

    Args:
        graph: The item graph.
        xt: Signals, one per column, ``(I, B)``.
        coefficients: ``(C, K + 1)``; one output per row, from one shared recursion
            :math:`T_{k+1} = 2\tilde{\mathbf{L}}T_k - T_{k-1}` (only two terms kept).

    Returns:
        ``C`` filtered blocks ``(I, B)``.
    """
    coefficients = coefficients.reshape(-1, coefficients.shape[-1]).tolist()
    order = len(coefficients[0]) - 1
    outs = [xt * row[0] for row in coefficients]
    prev2, prev = xt, None
    for k in range(1, order + 1):
        lap = prev if prev is not None else xt
        nxt = lap - 2.0 * graph.propagate_t(lap)
        if k >= 2:
            nxt = 2.0 * nxt - prev2
            prev2 = prev
        prev = nxt
        for out, row in zip(outs, coefficients):
            out.add_(nxt, alpha=row[k])
    return outs


@register_model("chebycf")
class ChebyshevFilter(GraphFilter):
    r"""A spectral filter of the normalised item-item graph approximated by Chebyshev interpolation,
    plus an ideal low-pass filter, with degree normalisation (the filter family of `"Graph Spectral
    Filtering with Chebyshev Interpolation for Recommendation" <https://arxiv.org/abs/2505.00552>`_,
    Kim et al., SIGIR 2025).

    .. math::
        \mathbf{s}_u = \Bigl[\sum_{k=0}^{K} c_k \, T_k(\tilde{\mathbf{L}})\Bigr]
            (\mathbf{r}_u \mathbf{D}_I^{-\beta})^\top \mathbf{D}_I^{\beta}
          + \alpha \, \mathbf{r}_u \mathbf{D}_I^{-\beta} \mathbf{V}\mathbf{V}^\top \mathbf{D}_I^{\beta},
        \qquad \tilde{\mathbf{L}} = \mathbf{I} - 2\tilde{\mathbf{R}}^\top\tilde{\mathbf{R}}

    where :math:`T_k` are Chebyshev polynomials (:math:`T_{k+1}(x) = 2xT_k(x) - T_{k-1}(x)`),
    :math:`c_k` interpolate the low-pass response :func:`plateau` of flatness :math:`\phi`
    (:func:`chebyshev_coefficients`) and :math:`\mathbf{V}` holds the top-:math:`r` right singular
    vectors of :math:`\tilde{\mathbf{R}}`. Each order costs two sparse products per block; the
    item-item matrix is never built densely.

    Memory (float32): fitted state :math:`36N + 4Ir` bytes, plus :math:`12Ik` for
    ``neighbours_top_k`` :math:`= k`; scoring a block of :math:`B` users needs about
    :math:`4B(U + 4I)` bytes (three Chebyshev terms and the sum). Time: :math:`O(K N B)` per block.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        order (int, optional): Polynomial order :math:`K`. (default: ``8``)
        flatness (float, optional): Flatness :math:`\phi` of the target response. (default: ``1.0``)
        alpha (float, optional): Weight :math:`\alpha` of the ideal low-pass filter. (default: ``0.2``)
        rank (int, optional): Rank :math:`r` of the ideal low-pass filter. (default: ``256``)
        power (float, optional): Degree normalisation exponent :math:`\beta`. (default: ``0.3``)
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
        order: int = 8,
        flatness: float = 1.0,
        alpha: float = 0.2,
        rank: int = 256,
        power: float = 0.3,
        neighbours_top_k: int | None = DEFAULT_NEIGHBOURS_TOP_K,
        batch_users: int = 1024,
        correction_rank: int = 0,
        factor_rank: int | None = None,
    ) -> None:
        super().__init__(num_users, num_items, neighbours_top_k, batch_users, correction_rank, factor_rank)
        if rank < 0 or flatness <= 0:
            raise ModelError("rank must be >= 0 and flatness > 0")
        self.order, self.flatness = int(order), float(flatness)
        self.alpha, self.rank, self.power = float(alpha), int(rank), float(power)
        self.init_kwargs.update(order=self.order, flatness=self.flatness, alpha=self.alpha, rank=self.rank, power=self.power)
        self.register_buffer("coefficients", chebyshev_coefficients(self.order, self.flatness).float())

    def _filtered(self, x: Tensor, power: float) -> Tensor:
        """``(x D^-power) G D^power`` with ``G`` the Chebyshev polynomial of the item graph."""
        d = self.item_degree.to(x.device)
        xt = (x * degree_power(d, -power)).t().contiguous()
        (out,) = chebyshev_filter_t(self.graph(), xt, self.coefficients)
        return out.t() * degree_power(d, power)

    def apply_linear(self, x: Tensor) -> Tensor:
        return self._filtered(x, self.power)

    def apply_linear_t(self, x: Tensor) -> Tensor:
        return self._filtered(x, -self.power)  # the polynomial is symmetric: only the degree scaling flips
