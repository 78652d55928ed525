r"""Fast feeding of PyG's :class:`~torch_geometric.nn.models.LightGCN`: a pre-normalised symmetric
sparse adjacency and a sparse product whose backward reuses that same matrix.

Why: PyG's default ``edge_index`` path re-normalises and scatters on every layer (ML_FACTS:
~300 s per Gowalla-sized BPR epoch on 2 cores). With ``LightGCN(normalize=False)`` and a
pre-normalised ``torch.sparse_csr`` adjacency, :class:`~torch_geometric.nn.conv.LGConv` reduces to
``spmm(adj, x)`` (its ``message_and_aggregate``), but autograd's backward of a CSR product
transposes the matrix on every call (~10x the forward cost). The normalised adjacency

.. math::
    \hat{A} = D^{-1/2} A D^{-1/2}, \qquad A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix}

is symmetric, so :math:`\partial L / \partial X = \hat{A}^\top G = \hat{A} G`: the backward is one more
forward-sized product (:class:`SymmetricSpmm`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN


def bipartite_edge_index(users: Tensor, items: Tensor, num_users: int) -> Tensor:
    """The undirected user-item graph as a PyG ``edge_index`` over ``num_users + num_items`` nodes.

    Users are nodes ``0..num_users-1``; item ``i`` is node ``num_users + i``. Both directions are
    included (what PyG's default LightGCN propagation expects).
    """
    u = users.long()
    i = items.long() + num_users
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])])


def normalized_adjacency(
    users: Tensor, items: Tensor, num_users: int, num_items: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    r"""The symmetric normalised adjacency :math:`D^{-1/2} A D^{-1/2}` as a ``torch.sparse_csr`` tensor.

    Duplicate (user, item) pairs count once. Nodes without edges have empty rows.

    Args:
        users (Tensor): User index of every training interaction.
        items (Tensor): Item index of every training interaction.
        num_users (int): Number of users.
        num_items (int): Number of items.
        dtype (torch.dtype, optional): Value dtype. (default: ``torch.float32``)

    Shapes:
        - **input:** users :math:`(E,)`, items :math:`(E,)`
        - **output:** :math:`(U + I, U + I)` sparse CSR with :math:`2E'` entries (:math:`E'` distinct pairs)
    """
    n = num_users + num_items
    device = users.device
    key = torch.unique(users.long() * num_items + items.long())  # sorted, deduplicated
    u = key // num_items
    i = key % num_items + num_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    order = torch.argsort(rows * n + cols)
    rows, cols = rows[order], cols[order]
    deg = torch.bincount(rows, minlength=n).to(dtype)
    inv_sqrt = deg.pow(-0.5)
    inv_sqrt[deg == 0] = 0.0
    values = inv_sqrt[rows] * inv_sqrt[cols]
    crow = torch.zeros(n + 1, dtype=torch.long, device=device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    if rows.numel() < 2**31 - 1 and n < 2**31 - 1:
        # int32 indices: the CPU (MKL) sparse kernels take them directly; int64 ones are converted
        # to int32 (copied) on every product, which costs as much as the product itself.
        crow, cols = crow.to(torch.int32), cols.to(torch.int32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, cols, values, size=(n, n), device=device, check_invariants=False)


class SymmetricSpmm(torch.autograd.Function):
    r"""``adj @ x`` for a *symmetric* sparse ``adj``, with the backward ``adj @ grad`` (no transpose).

    Only valid when ``adj`` is symmetric and needs no gradient (the normalised adjacency).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj = adj  # type: ignore[attr-defined]
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        return None, torch.sparse.mm(ctx.adj, grad.contiguous())  # type: ignore[attr-defined]


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """Apply :class:`SymmetricSpmm` (``adj`` must be symmetric)."""
    return SymmetricSpmm.apply(adj, x)


def _fast_path(conv: torch.nn.Module, adj: Tensor) -> bool:
    """True when ``conv(x, adj)`` is exactly ``spmm(adj, x)``, so the symmetric product may replace it.

    That holds for an :class:`LGConv` built with ``normalize=False`` and ``aggr='add'`` fed a
    sparse adjacency: :meth:`LGConv.forward` then skips ``gcn_norm`` and ``propagate`` dispatches
    to ``message_and_aggregate`` = ``spmm(adj_t, x, reduce='sum')`` (``adj_t == adj`` here).
    """
    return (
        type(conv) is LGConv
        and not conv.normalize
        and conv.aggr == "add"
        and adj.layout in (torch.sparse_csr, torch.sparse_coo)
    )


def propagate(lightgcn: LightGCN, x0: Tensor, adj: Tensor, symmetric: bool = True) -> Tensor:
    r"""Push layer-0 node embeddings ``x0`` through a PyG LightGCN's layers and combine with its ``alpha``.

    .. math::
        \mathbf{X} = \sum_{l=0}^{L} \alpha_l \mathbf{X}^{(l)}, \qquad \mathbf{X}^{(l+1)} = \mathrm{conv}_l(\mathbf{X}^{(l)}, \hat{A})

    This is :meth:`LightGCN.get_embedding` with a caller-chosen ``x0`` (PyG's method always starts
    from ``lightgcn.embedding.weight``), so a fused model can feed id embeddings plus projected text
    features. We run the model's own ``convs`` and ``alpha`` rather than re-implementing LightGCN;
    the only substitution is the layer product when :func:`_fast_path` proves it is ``spmm(adj, x)``
    and ``symmetric`` says the adjacency is symmetric: then :class:`SymmetricSpmm` gives the same
    values with a transpose-free backward. Any other conv / adjacency goes through ``conv(x, adj)``.

    Args:
        lightgcn (LightGCN): The PyG model (its ``convs`` and ``alpha`` are used; its embedding is not).
        x0 (Tensor): Layer-0 embeddings of all nodes.
        adj (Tensor): Adjacency fed to the convs: a pre-normalised sparse matrix (with
            ``LightGCN(normalize=False)``) or an ``edge_index`` (with ``normalize=True``).
        symmetric (bool, optional): Whether ``adj`` is symmetric (enables the fast backward).
            (default: ``True``)

    Shapes:
        - **input:** x0 :math:`(N, F)`
        - **output:** :math:`(N, F)`
    """
    out = x0 * lightgcn.alpha[0]
    x = x0
    for layer, conv in enumerate(lightgcn.convs):
        x = symmetric_spmm(adj, x) if symmetric and _fast_path(conv, adj) else conv(x, adj)
        out = out + x * lightgcn.alpha[layer + 1]
    return out
