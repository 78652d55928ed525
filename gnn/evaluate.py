"""Full-ranking evaluation: every user against every item, seen items masked, chunked over users.

For the ``test`` part the training and validation items of each user are masked; for ``val`` the
training items. Scores come from any :class:`gnn.models.Recommender` (or a bare scorer), so
LightGCN, BPR-MF, MostPopular and ItemKNN are compared by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from graphrec.errors import InvalidArgumentError
from gnn.data import InteractionData, SplitPart
from gnn.metrics import METRIC_FUNCTIONS, METRICS
from gnn.models import Recommender, Scorer


@dataclass
class EvalResult:
    """Mean metrics (``"recall@20"`` -> value), the number of evaluated users and the time taken."""

    metrics: dict[str, float]
    num_users: int
    seconds: float
    part: str
    extra: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


class _RowIndex:
    """CSR-style per-user item lists on a device, for vectorised gathering of many users' rows."""

    def __init__(self, users: Tensor, items: Tensor, num_users: int, num_items: int, device: torch.device) -> None:
        key = torch.unique(users.long() * num_items + items.long()).to(device)
        self.num_items = num_items
        self.keys = key
        self.items = key % num_items
        counts = torch.bincount(key // num_items, minlength=num_users)
        self.counts = counts
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long, device=device)
        self.indptr[1:] = torch.cumsum(counts, 0)

    def gather(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """(local row, item) pairs of all items of ``users`` (local row = position in ``users``)."""
        counts = self.counts[users]
        total = int(counts.sum())
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts, output_size=total)
        offsets = torch.cumsum(counts, 0) - counts
        pos = self.indptr[users].repeat_interleave(counts, output_size=total) + (
            torch.arange(total, device=users.device) - offsets.repeat_interleave(counts, output_size=total)
        )
        return rows, self.items[pos]

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Membership of (user, item) pairs; ``users`` broadcast against ``items``."""
        if self.keys.numel() == 0:
            return torch.zeros(items.shape, dtype=torch.bool, device=items.device)
        q = users.long() * self.num_items + items.long()
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == q


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU raises."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


class Evaluator:
    """Vectorised full-ranking evaluator of one split part.

    Args:
        data (InteractionData): The interactions.
        part (str, optional): ``test`` (masks train + val) or ``val`` (masks train). (default: ``test``)
        ks (Sequence[int], optional): Cut-offs. (default: ``(20,)``)
        metrics (Sequence[str], optional): Subset of :data:`gnn.metrics.METRICS`. (default: all)
        batch_users (int, optional): Users per chunk (chunk x items scores in memory). (default: ``1024``)
        device (str or torch.device, optional): Where scores and top-k run. (default: ``"auto"``)
    """

    def __init__(
        self,
        data: InteractionData,
        part: str = "test",
        ks: Sequence[int] = (20,),
        metrics: Sequence[str] = METRICS,
        batch_users: int = 1024,
        device: str | torch.device = "auto",
    ) -> None:
        if part not in ("val", "test"):
            raise InvalidArgumentError(f"evaluation part must be 'val' or 'test', got {part!r}")
        bad = set(metrics) - set(METRICS)
        if bad:
            raise InvalidArgumentError(f"unknown metrics {sorted(bad)}; known: {list(METRICS)}")
        if not ks or any(k <= 0 for k in ks):
            raise InvalidArgumentError("ks must be positive integers")
        self.part = part
        self.ks = sorted(set(int(k) for k in ks))
        self.metrics = list(metrics)
        self.batch_users = batch_users
        self.device = resolve_device(device)
        self.num_users, self.num_items = data.num_users, data.num_items
        masked = [data.train] + ([data.val] if part == "test" else [])
        mu = torch.cat([p.users for p in masked])
        mi = torch.cat([p.items for p in masked])
        self.exclude = _RowIndex(mu, mi, self.num_users, self.num_items, self.device)
        target: SplitPart = data.part(part)
        self.target = _RowIndex(target.users, target.items, self.num_users, self.num_items, self.device)
        self.users = torch.nonzero(self.target.counts > 0).squeeze(1)

    def evaluate(self, model: Recommender | Scorer) -> EvalResult:
        """Score all evaluated users, mask seen items, take the top max(ks) and average the metrics.

        Returns:
            :class:`EvalResult` with ``"<metric>@<k>"`` keys plus ``"coverage@<k>"`` (share of the
            catalogue appearing in at least one top-k list).
        """
        t0 = time.perf_counter()
        scorer: Callable[[Tensor], Tensor] = model.scorer() if isinstance(model, Recommender) else model
        kmax = max(self.ks)
        ktop = min(kmax, self.num_items)
        sums = {f"{m}@{k}": torch.zeros((), dtype=torch.float64, device=self.device) for m in self.metrics for k in self.ks}
        covered = {k: torch.zeros(self.num_items, dtype=torch.bool, device=self.device) for k in self.ks}
        with torch.no_grad():
            for start in range(0, self.users.numel(), self.batch_users):
                users = self.users[start : start + self.batch_users]
                scores = scorer(users).to(self.device, torch.float32)
                rows, cols = self.exclude.gather(users)
                scores[rows, cols] = float("-inf")
                top_scores, top = torch.topk(scores, ktop, dim=1)
                valid = top_scores > float("-inf")
                hits = self.target.contains(users.unsqueeze(1), top) & valid
                if ktop < kmax:
                    hits = torch.cat([hits, hits.new_zeros(hits.size(0), kmax - ktop)], 1)
                n_rel = self.target.counts[users]
                for k in self.ks:
                    for m in self.metrics:
                        sums[f"{m}@{k}"] += METRIC_FUNCTIONS[m](hits, n_rel, k).sum()
                    kk = min(k, ktop)
                    covered[k][top[:, :kk][valid[:, :kk]]] = True
        n = max(int(self.users.numel()), 1)
        out = {key: float(v) / n for key, v in sums.items()}
        for k in self.ks:
            out[f"coverage@{k}"] = float(covered[k].sum()) / self.num_items
        return EvalResult(metrics=out, num_users=int(self.users.numel()), seconds=time.perf_counter() - t0, part=self.part)
