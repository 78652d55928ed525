"""Vocabulary: external string ids <-> contiguous indices ``0..n-1``, with explicit unknown handling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from graphrec.errors import InvalidArgumentError, NotFoundError


class Vocabulary:
    """Maps external ids (strings) to indices ``0..n-1`` and back.

    Unknown ids are never silently mapped to a valid index: :meth:`index` raises, and
    :meth:`indices` either raises or returns ``-1`` (``unknown="mask"``) so the caller decides.

    Args:
        ids (Sequence[str]): The ids, in index order. Must be unique.
        kind (str, optional): What the ids name (``user`` / ``item``), used in error messages.
            (default: ``"id"``)
        not_found (type, optional): Error class raised for unknown ids (default: :class:`NotFoundError`).
    """

    UNKNOWN: int = -1

    def __init__(self, ids: Iterable[str], kind: str = "id", not_found: type[NotFoundError] = NotFoundError) -> None:
        self._ids = np.asarray([str(i) for i in ids], dtype=object)
        self.kind = kind
        self._not_found = not_found
        self._index = pd.Index(self._ids)
        if not self._index.is_unique:
            raise InvalidArgumentError(f"duplicate {kind} ids in vocabulary")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    @property
    def ids(self) -> list[str]:
        """All ids in index order."""
        return self._ids.tolist()

    def index(self, external_id: str) -> int:
        """Index of one id.

        Raises:
            NotFoundError: (or the class given at construction) if the id is unknown.
        """
        pos = self._index.get_indexer([str(external_id)])[0]
        if pos < 0:
            raise self._not_found(f"unknown {self.kind} id {external_id!r}")
        return int(pos)

    def indices(self, external_ids: Sequence[str], unknown: Literal["raise", "mask"] = "raise") -> np.ndarray:
        """Indices of many ids (int64).

        Args:
            external_ids: Ids to look up.
            unknown: ``raise`` (default) raises on the first unknown id; ``mask`` returns
                :attr:`UNKNOWN` (``-1``) for unknown ids.
        """
        pos = self._index.get_indexer([str(i) for i in external_ids]).astype(np.int64)
        if unknown == "raise" and (pos < 0).any():
            missing = [external_ids[j] for j in np.flatnonzero(pos < 0)[:5]]
            raise self._not_found(f"unknown {self.kind} ids {missing!r}")
        return pos

    def id(self, index: int) -> str:
        """External id of one index.

        Raises:
            InvalidArgumentError: If the index is out of range.
        """
        if not 0 <= int(index) < len(self._ids):
            raise InvalidArgumentError(f"{self.kind} index {index} out of range [0, {len(self._ids)})")
        return str(self._ids[int(index)])

    def lookup(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of many indices."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise InvalidArgumentError(f"{self.kind} index out of range [0, {len(self._ids)})")
        return self._ids[idx].tolist()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.kind == other.kind and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary(kind={self.kind!r}, size={len(self)})"
