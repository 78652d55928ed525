"""The trainer's step equals a textbook LightGCN step (the reference implementation's formulation).

The textbook side is written the way LightGCN's reference PyTorch code states the model: two
``nn.Embedding`` tables, ``D^-1/2 A D^-1/2`` built densely, three ``torch.sparse.mm`` layers averaged,
BPR as ``mean(softplus(s- - s+))`` plus ``reg * (|e_u|^2 + |e_i+|^2 + |e_i-|^2) / (2B)`` on the batch's
ego embeddings, and plain (unfused) Adam. The project's side is what :func:`gnn.train.train_model` runs
per step: the pre-normalised CSR operator, the gathered rows, fused Adam. Same initial weights and
same batches (with repeated users and items) must give the same weights after every step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.losses import make_loss
from gnn.train import create_model, make_optimizer, training_step


class TextbookLightGCN(torch.nn.Module):
    """LightGCN as the paper and the reference code write it (no shortcuts)."""

    def __init__(self, weight: torch.Tensor, num_users: int, users: np.ndarray, items: np.ndarray, num_layers: int) -> None:
        super().__init__()
        num_items = weight.size(0) - num_users
        self.num_users, self.num_layers = num_users, num_layers
        self.user = torch.nn.Embedding(num_users, weight.size(1))
        self.item = torch.nn.Embedding(num_items, weight.size(1))
        with torch.no_grad():
            self.user.weight.copy_(weight[:num_users])
            self.item.weight.copy_(weight[num_users:])
        n = num_users + num_items
        adj = np.zeros((n, n), dtype=np.float64)
        adj[users, num_users + items] = 1.0
        adj[num_users + items, users] = 1.0
        deg = adj.sum(1)
        d_inv = np.where(deg > 0, deg, np.inf) ** -0.5
        norm = d_inv[:, None] * adj * d_inv[None, :]
        self.graph = torch.tensor(norm, dtype=torch.float32).to_sparse()

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user.weight, self.item.weight])
        layers = [x]
        for _ in range(self.num_layers):
            x = torch.sparse.mm(self.graph, x)
            layers.append(x)
        out = torch.stack(layers, dim=1).mean(dim=1)
        return out[: self.num_users], out[self.num_users :]

    def bpr_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float) -> torch.Tensor:
        """``neg`` of shape ``(B, N)``: the mean over the negatives, the negatives' L2 divided by ``N``."""
        u_fin, i_fin = self.final()
        u, p, n = u_fin[users], i_fin[pos], i_fin[neg]
        pos_scores = (u * p).sum(-1, keepdim=True)
        neg_scores = (u.unsqueeze(1) * n).sum(-1)
        ranking = F.softplus(neg_scores - pos_scores).mean()
        u0, p0, n0 = self.user(users), self.item(pos), self.item(neg)
        l2 = 0.5 * (u0.norm(2).pow(2) + p0.norm(2).pow(2) + n0.norm(2).pow(2) / neg.size(1)) / users.numel()
        return ranking + reg * l2


@pytest.mark.parametrize("num_negatives", [1, 4])
def test_training_step_equals_textbook_lightgcn(tiny_data: InteractionData, num_negatives: int) -> None:
    config = TrainConfig(model="lightgcn", embedding_dim=8, num_layers=3, lr=0.01, reg=0.05, device="cpu", seed=3)
    model = create_model(config, tiny_data)
    weight0 = model.lightgcn.embedding.weight.detach().clone()
    users, items = tiny_data.train.users.numpy(), tiny_data.train.items.numpy()
    textbook = TextbookLightGCN(weight0, tiny_data.num_users, users, items, config.num_layers)

    opt = make_optimizer(model, config.lr)
    ref_opt = torch.optim.Adam(textbook.parameters(), lr=config.lr)
    loss_fn = make_loss("bpr")
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        # 48 rows over 40 users / 30 items: repeated users, positives and negatives in every batch
        rows = torch.randint(0, len(users), (48,), generator=g)
        bu, bp = torch.as_tensor(users)[rows].long(), torch.as_tensor(items)[rows].long()
        bn = torch.randint(0, tiny_data.num_items, (48, num_negatives), generator=g)

        ours = training_step(model, opt, loss_fn, bu, bp, bn, config.reg)
        ref_loss = textbook.bpr_loss(bu, bp, bn, config.reg)
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()

        torch.testing.assert_close(ours, ref_loss.detach(), rtol=1e-5, atol=1e-6)
        expected = torch.cat([textbook.user.weight, textbook.item.weight]).detach()
        torch.testing.assert_close(model.lightgcn.embedding.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    # the weights moved: the comparison above is not between two untouched copies
    assert not torch.allclose(model.lightgcn.embedding.weight.detach(), weight0)
