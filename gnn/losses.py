r"""Ranking losses (modules) and the ego-embedding L2 term.

PyG's ``BPRLoss`` is not used: it divides the regularisation by the batch size twice
(pytorch_geometric issue 7196). These follow the reference LightGCN implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class BPRLoss(torch.nn.Module):
    r"""Bayesian Personalised Ranking over one or several negatives per positive.

    .. math::
        \mathcal{L} = \frac{1}{B\,N} \sum_{b=1}^{B} \sum_{n=1}^{N}
        \operatorname{softplus}(s_{b,n}^{-} - s_b^{+})

    Shapes:
        - **input:** pos :math:`(B,)`, neg :math:`(B, N)`
        - **output:** scalar
    """

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return F.softplus(neg - pos.unsqueeze(-1)).mean()


class SampledSoftmaxLoss(torch.nn.Module):
    r"""Sampled-softmax cross-entropy of each positive against its sampled negatives.

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_{b} \log
        \frac{e^{s_b^{+}/\tau}}{e^{s_b^{+}/\tau} + \sum_{n} e^{s_{b,n}^{-}/\tau}}

    Args:
        temperature (float, optional): :math:`\tau`. (default: ``0.2``)

    Shapes:
        - **input:** pos :math:`(B,)`, neg :math:`(B, N)`
        - **output:** scalar
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1) / self.temperature
        return -torch.log_softmax(logits, dim=-1)[:, 0].mean()


def l2_ego(users0: Tensor, pos0: Tensor, neg0: Tensor, shared: bool = False) -> Tensor:
    r"""LightGCN's L2 term on the batch's layer-0 embeddings, averaged over the batch.

    .. math::
        \frac{1}{2B}\left(\lVert E_u^{(0)} \rVert^2 + \lVert E_{i^+}^{(0)} \rVert^2
        + \tfrac{1}{N}\lVert E_{i^-}^{(0)} \rVert^2\right)

    With ``shared`` negatives (the same :math:`N` rows for every positive) the negative term is the
    same sum over the :math:`B \times N` (positive, negative) pairs,
    :math:`\tfrac{B}{N}\lVert E_{i^-}^{(0)} \rVert^2`, computed without expanding.

    Shapes:
        - **input:** users0 :math:`(B, d)`, pos0 :math:`(B, d)`, neg0 :math:`(B, N, d)`
          (shared: :math:`(N, d)`)
    """
    b = users0.size(0)
    if shared:
        return (users0.pow(2).sum() + pos0.pow(2).sum() + neg0.pow(2).sum() * b / neg0.size(0)) / (2 * b)
    n = neg0.size(1) if neg0.dim() == 3 else 1
    return (users0.pow(2).sum() + pos0.pow(2).sum() + neg0.pow(2).sum() / n) / (2 * b)


def make_loss(name: str, temperature: float = 0.2) -> torch.nn.Module:
    """``bpr`` or ``softmax``."""
    if name == "bpr":
        return BPRLoss()
    if name == "softmax":
        return SampledSoftmaxLoss(temperature)
    raise ValueError(f"unknown loss {name!r}")
