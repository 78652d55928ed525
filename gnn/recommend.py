"""Top-k recommendations by external id from any :class:`gnn.models.Recommender` (offline use,
CLI and contract tests; the online path serves from Neo4j vectors)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graphrec.errors import InvalidArgumentError
from gnn.models import Recommender, Scorer
from gnn.vocab import Vocabulary


@dataclass
class ScoredItem:
    """One recommended item."""

    item_id: str
    score: float


class TopK:
    """Ranks items for known users, excluding what they interacted with in training.

    Args:
        model: Any recommender (its ``train_users`` / ``train_items`` are the history to exclude).
        users: User vocabulary of the model.
        items: Item vocabulary of the model.
    """

    def __init__(self, model: Recommender, users: Vocabulary, items: Vocabulary) -> None:
        self.model = model
        self.users = users
        self.items = items
        self._scorer: Scorer | None = None

    def _score(self, user_index: int) -> torch.Tensor:
        if self._scorer is None:
            self._scorer = self.model.scorer()
        dev = self.model.train_users.device
        return self._scorer(torch.tensor([user_index], device=dev))[0].float().cpu()

    def history(self, user_index: int) -> torch.Tensor:
        """Item indices the user interacted with in training (possibly empty)."""
        mask = self.model.train_users == user_index
        return torch.unique(self.model.train_items[mask]).cpu()

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> list[ScoredItem]:
        """Top-``k`` items for ``user_id`` (fewer when fewer items are left after exclusion).

        Raises:
            UnknownUserError: The user is not in the model's vocabulary.
            InvalidArgumentError: ``k`` is not positive.
        """
        if k <= 0:
            raise InvalidArgumentError(f"k must be positive, got {k}")
        u = self.users.index(user_id)
        scores = self._score(u)
        allowed = torch.ones(self.items.__len__(), dtype=torch.bool)
        if exclude_seen:
            allowed[self.history(u)] = False
        cand = torch.nonzero(allowed).squeeze(1)
        if cand.numel() == 0:
            return []
        kk = min(k, cand.numel())
        vals, pos = torch.topk(scores[cand], kk)
        ids = self.items.lookup(cand[pos].numpy())
        return [ScoredItem(item_id=i, score=float(v)) for i, v in zip(ids, vals.tolist())]
