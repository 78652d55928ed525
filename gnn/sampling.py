"""Vectorised uniform negative sampling that never returns a positive.

Positives are hashed to ``user * num_items + item`` and sorted once; membership of a whole batch
of candidates is one ``searchsorted``. Rejected candidates are redrawn (vectorised rounds); after
``max_rounds`` the few left (users who interacted with most of the catalogue) are drawn exactly:
draw a rank ``r`` among the user's non-positives and map it to an item id by skipping positives
(a fixpoint ``c = r + #{positives <= c}``, also vectorised). No Python loop runs over users.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphrec.errors import ModelError


class NegativeSampler:
    """Uniform negatives over items a user has not interacted with (in the training data).

    Args:
        users (Tensor): User index of every positive interaction.
        items (Tensor): Item index of every positive interaction.
        num_users (int): Number of users.
        num_items (int): Number of items.
        max_rounds (int, optional): Rejection rounds before the exact fallback. (default: ``8``)
    """

    def __init__(self, users: Tensor, items: Tensor, num_users: int, num_items: int, max_rounds: int = 8) -> None:
        self.num_users = num_users
        self.num_items = num_items
        self.max_rounds = max_rounds
        self.keys = torch.unique(users.long() * num_items + items.long())  # sorted, distinct
        pos_users = self.keys // num_items
        self.degree = torch.bincount(pos_users, minlength=num_users)
        self.user_start = torch.zeros(num_users + 1, dtype=torch.long, device=self.keys.device)
        self.user_start[1:] = torch.cumsum(self.degree, 0)

    def to(self, device: torch.device | str) -> NegativeSampler:
        """Move the index to ``device``."""
        self.keys = self.keys.to(device)
        self.degree = self.degree.to(device)
        self.user_start = self.user_start.to(device)
        return self

    def has_negatives(self, users: Tensor) -> Tensor:
        """Boolean mask: the user has at least one item that is not a positive."""
        return self.degree[users] < self.num_items

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Vectorised membership test of (user, item) pairs among the positives."""
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        q = users.long() * self.num_items + items.long()
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == q

    def sample_positives(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One training item of each user entry, drawn uniformly among that user's positives.

        Args:
            users (Tensor): User indices, each with at least one positive.
            generator (torch.Generator, optional): Random source (on the sampler's device).

        Returns:
            Item indices, same shape as ``users``.
        """
        u = users.long()
        offset = (torch.rand(u.shape, generator=generator, device=self.keys.device, dtype=torch.float64) * self.degree[u]).long()
        offset = torch.minimum(offset, self.degree[u] - 1)  # guards the (measure-zero) rand == 1 - eps rounding
        return self.keys[self.user_start[u] + offset] % self.num_items

    def sample(self, users: Tensor, num_negatives: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_negatives`` negatives per user entry.

        Args:
            users (Tensor): User indices, shape ``(B,)``, on the sampler's device.
            num_negatives (int, optional): Negatives per entry. (default: ``1``)
            generator (torch.Generator, optional): Random source (on the sampler's device).

        Returns:
            Item indices of shape ``(B, num_negatives)``, none of them a positive of its user.

        Raises:
            ModelError: A user has interacted with every item (no negative exists).
        """
        if users.numel() and not bool(self.has_negatives(users).all()):
            raise ModelError("cannot sample a negative for a user who interacted with every item")
        u = users.long().unsqueeze(1).expand(-1, num_negatives).reshape(-1)
        dev = self.keys.device
        neg = torch.randint(0, self.num_items, (u.numel(),), generator=generator, device=dev)
        bad = torch.nonzero(self.is_positive(u, neg)).squeeze(1)
        rounds = 0
        while bad.numel() and rounds < self.max_rounds:
            neg[bad] = torch.randint(0, self.num_items, (bad.numel(),), generator=generator, device=dev)
            bad = bad[self.is_positive(u[bad], neg[bad])]
            rounds += 1
        if bad.numel():
            neg[bad] = self._exact(u[bad], generator)
        return neg.view(-1, num_negatives)

    def _exact(self, users: Tensor, generator: torch.Generator | None) -> Tensor:
        """Exact uniform draw among non-positives: rank -> item by skipping the sorted positives."""
        free = (self.num_items - self.degree[users]).to(torch.float64)
        r = (torch.rand(users.numel(), generator=generator, device=self.keys.device, dtype=torch.float64) * free).long()
        base = users * self.num_items
        start = self.user_start[users]
        c = r.clone()
        while True:
            # number of the user's positives with item <= c
            n_le = torch.searchsorted(self.keys, base + c, right=True) - start
            nxt = r + n_le
            if torch.equal(nxt, c):
                return c
            c = nxt


def distinct_rows(num: int, rows: int, cols: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> Tensor:
    """A ``(rows, cols)`` matrix of indices in ``[0, num)``, distinct within each row, each row a uniform subset.

    Few per row (``cols <= num / 2``): draw with replacement, then redraw the later copies of
    repeated values until no row repeats one (rounds shrink geometrically; every label is treated
    alike, so each row's set is uniform among ``cols``-subsets). Many per row: the first ``cols``
    of a random permutation per row. Either way the work is ``O(rows * max(cols, num))`` with
    ``num < 2 * cols`` in the permutation branch, i.e. linear in the output.

    Args:
        num (int): Size of the population.
        rows (int): Number of independent draws.
        cols (int): Distinct indices per draw (at most ``num``).
        generator (torch.Generator, optional): Random source (on ``device``).
        device (torch.device or str, optional): Device of the result. (default: ``"cpu"``)

    Raises:
        ModelError: ``cols > num``.
    """
    if cols > num:
        raise ModelError(f"cannot draw {cols} distinct indices out of {num}")
    if 2 * cols > num:
        keys = torch.rand((rows, num), generator=generator, device=device)
        return keys.argsort(dim=1)[:, :cols]
    out = torch.randint(0, num, (rows, cols), generator=generator, device=device)
    while True:
        srt, order = out.sort(dim=1)
        repeat = srt[:, 1:] == srt[:, :-1]
        r, c = repeat.nonzero(as_tuple=True)
        if r.numel() == 0:
            return out
        out[r, order[r, c + 1]] = torch.randint(0, num, (r.numel(),), generator=generator, device=device)


def epoch_positives(
    mode: str,
    sampler: NegativeSampler,
    pos_users: Tensor,
    pos_items: Tensor,
    user_pool: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""One epoch's (user, positive item) pairs, in step order (step ``s`` trains rows ``s*B:(s+1)*B``).

    Modes, with :math:`n` training pairs and :math:`B` = ``batch_size``:

    - ``interaction``: every training pair once, in a random order (:math:`n` rows);
    - ``user``: :math:`n` users drawn uniformly with replacement from ``user_pool``,
      one of each user's training items drawn uniformly (LightGCN's PyTorch code);
    - ``user_distinct``: :math:`\lceil n / B \rceil` full batches of :math:`B` users, distinct within
      a batch (with replacement when :math:`B` exceeds the users), one training item each
      (LightGCN's TensorFlow code, ``rd.sample(users, batch_size)`` per step).

    Args:
        mode (str): ``interaction``, ``user`` or ``user_distinct``.
        sampler (NegativeSampler): Holds each user's training items (on the pairs' device).
        pos_users (Tensor): User of every training pair (users with no negative already removed).
        pos_items (Tensor): Item of every training pair.
        user_pool (Tensor): The distinct users the ``user`` modes draw from, sorted
            (``torch.unique(pos_users)``, computed once by the caller rather than every epoch).
        batch_size (int): Pairs per optimisation step.
        generator (torch.Generator, optional): Random source (on the pairs' device).

    Returns:
        ``(users, items)`` of equal length.

    Raises:
        ModelError: Unknown ``mode``.
    """
    device = pos_users.device
    n = pos_users.numel()
    if mode == "interaction":
        perm = torch.randperm(n, generator=generator, device=device)
        return pos_users[perm], pos_items[perm]
    candidates = user_pool
    if mode == "user":
        idx = torch.randint(0, candidates.numel(), (n,), generator=generator, device=device)
    elif mode == "user_distinct":
        steps = (n + batch_size - 1) // batch_size
        if batch_size <= candidates.numel():
            idx = distinct_rows(candidates.numel(), steps, batch_size, generator, device).reshape(-1)
        else:
            idx = torch.randint(0, candidates.numel(), (steps * batch_size,), generator=generator, device=device)
    else:
        raise ModelError(f"unknown positive sampling {mode!r}")
    users = candidates[idx]
    return users, sampler.sample_positives(users, generator)
