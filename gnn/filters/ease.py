r"""EASE: the closed-form item-item autoencoder (Steck, WWW 2019), where its dense Gram fits in memory."""

from __future__ import annotations

import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.filters.base import DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.filters.normalise import ItemGraph
from gnn.models import register_model

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Default memory limit of EASE's dense item-item matrices: 4 GiB (about 18,900 items)."""


def ease_memory_bytes(num_items: int) -> int:
    r"""Peak memory of fitting EASE: three dense float32 :math:`I \times I` matrices (Gram, inverse,
    weights), :math:`12 I^2` bytes."""
    return 12 * num_items * num_items


def check_ease_fits(num_items: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Raise :class:`ModelError` when EASE's dense matrices for ``num_items`` items exceed ``max_bytes``."""
    need = ease_memory_bytes(num_items)
    if need > max_bytes:
        raise ModelError(
            f"EASE needs 12 * items^2 bytes = {need / 1024**3:.1f} GiB for {num_items} items, over the limit of "
            f"{max_bytes / 1024**3:.1f} GiB (max_bytes); use gfcf or chebycf, or raise the limit"
        )


@register_model("ease")
class EASE(GraphFilter):
    r"""EASE from `"Embarrassingly Shallow Autoencoders for Sparse Data"
    <https://arxiv.org/abs/1905.03375>`_ (Steck, WWW 2019).

    .. math::
        \mathbf{G} = \mathbf{R}^\top\mathbf{R} + \lambda \mathbf{I}, \qquad
        \mathbf{B} = \mathbf{I} - \mathbf{G}^{-1} \operatorname{diag}(\mathbf{G}^{-1})^{-1}, \qquad
        \mathbf{s}_u = \mathbf{r}_u \mathbf{B}

    (:math:`\mathbf{B}` has a zero diagonal.) The dense :math:`I \times I` matrices make it a model
    for catalogues up to a few tens of thousands of items: fitting refuses (:class:`ModelError`)
    when :func:`ease_memory_bytes` exceeds ``max_bytes``.

    Memory (float32): :math:`12 I^2` bytes while fitting; stored: :math:`4 I^2` bytes (exact) or
    :math:`12 I k` bytes with ``neighbours_top_k`` :math:`= k`, plus :math:`24N` for the interactions.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        reg (float, optional): L2 weight :math:`\lambda`. (default: ``250.0``)
        max_bytes (int, optional): Memory limit of the dense matrices. (default: 4 GiB)
        neighbours_top_k (int, optional): Weights kept per item, scored with the truncated matrix;
            ``None``: exact (dense :math:`\mathbf{B}` kept). (default: ``100``)
        batch_users (int, optional): Items per block when computing neighbours. (default: ``1024``)
        correction_rank (int, optional): Rank of the low-rank correction of the cut item-item part
            (:mod:`gnn.filters.base`); ``0``: none. (default: ``0``)
        factor_rank (int, optional): With a correction, the rank of the whole served low-rank part;
            ``None``: ``correction_rank``. (default: ``None``)

    Shapes:
        - **scorer:** users :math:`(B,)` -> scores :math:`(B, I)`
        - **live_form(k):** neighbours :math:`(I, I)` with :math:`\le k` per row, no factors
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        reg: float = 250.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        neighbours_top_k: int | None = DEFAULT_NEIGHBOURS_TOP_K,
        batch_users: int = 1024,
        correction_rank: int = 0,
        factor_rank: int | None = None,
    ) -> None:
        super().__init__(num_users, num_items, neighbours_top_k, batch_users, correction_rank, factor_rank)
        if reg <= 0:
            raise ModelError("reg must be positive")
        self.reg, self.max_bytes = float(reg), int(max_bytes)
        self.alpha, self.rank = 0.0, 0
        self.init_kwargs.update(reg=self.reg, max_bytes=self.max_bytes)
        self.register_buffer("weights", torch.zeros(0, 0))

    def _resizable_buffers(self) -> tuple[str, ...]:
        return (*super()._resizable_buffers(), "weights")

    def fit_linear(self, graph: ItemGraph) -> None:
        check_ease_fits(self.num_items, self.max_bytes)
        h = graph.history
        gram = (h.t() @ h.to_dense()) if h.device.type != "cpu" else torch.from_numpy(_gram_cpu(h))
        gram = gram.to(graph.device, torch.float32)
        gram.diagonal().add_(self.reg)
        p = torch.linalg.inv(gram)
        del gram
        p.div_(-p.diagonal().unsqueeze(0))
        p.diagonal().zero_()
        self.weights = p

    def release_linear(self) -> None:
        self.weights = torch.zeros(0, 0, device=self.weights.device)

    def apply_linear(self, x: Tensor) -> Tensor:
        if self.weights.shape != (self.num_items, self.num_items):
            raise ModelError("EASE is not fitted (or was fitted with neighbours_top_k)")
        return x @ self.weights.to(x.device)

    def apply_linear_t(self, x: Tensor) -> Tensor:
        if self.weights.shape != (self.num_items, self.num_items):
            raise ModelError("EASE is not fitted (or was fitted with neighbours_top_k)")
        return x @ self.weights.to(x.device).t()


def _gram_cpu(h: Tensor):  # type: ignore[no-untyped-def]
    """:math:`\\mathbf{R}^\\top\\mathbf{R}` of a CSR history on the CPU, through scipy (dense float32)."""
    import numpy as np
    import scipy.sparse as sp

    r = sp.csr_matrix((h.values().numpy(), h.col_indices().numpy(), h.crow_indices().numpy()), shape=tuple(h.shape))
    return np.asarray((r.T @ r).todense(), dtype=np.float32)
