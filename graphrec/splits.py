"""Named train / validation / test splits over an interactions frame.

Every split is a plain function with explicit keyword arguments, registered by name in
:data:`SPLITS`, so that a snapshot's manifest (:class:`graphrec.snapshot.SplitSpec`) records
exactly which code produced its ``split`` column, and :func:`apply_split` replays it.

Input frame columns: ``user_idx``, ``item_idx`` (ints), ``rating`` (float, may be NaN),
``timestamp`` (int seconds, ``-1`` when unknown) and, for :func:`fixed`, the data's own ``split``
(``train`` / ``test``, optionally ``val``). Missing ``rating`` / ``timestamp`` columns are allowed
(every timestamp is then unknown).

Output: a copy of the frame in the same row order with a ``split`` column holding ``train``,
``val`` or ``test``.

Determinism: the order of a user's interactions used by the random splits (and to break ties in
the temporal split) comes from a hash of ``(user_idx, item_idx, seed)``, not from the row order,
so the same data and seed give the same split even if the rows are shuffled.

Conventions shared by all splits:

- Per user, held-out counts are ``round_half_up(n * fraction)``.
- A user always keeps at least one training interaction: users with a single interaction stay
  entirely in ``train`` (they are still useful as training signal, but cannot be evaluated).
- ``val_fraction`` is the fraction of the user's *non-test* interactions moved to ``val``
  (for :func:`fixed`: of the user's training interactions). ``val_fraction=0`` gives no
  validation part.

Nothing here imports torch or neo4j.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd

from graphrec.errors import DataError, InvalidArgumentError
from graphrec.snapshot import SplitSpec

TRAIN, VAL, TEST = "train", "val", "test"

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class SplitFunction(Protocol):
    """Signature of a registered split function."""

    def __call__(self, df: pd.DataFrame, *, seed: int = 0, **params: Any) -> pd.DataFrame: ...


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser over uint64 (wrap-around arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def _pair_keys(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random uint64 key per (user, item, seed), independent of row order."""
    u = users.astype(np.uint64)
    i = items.astype(np.uint64)
    s = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return _splitmix64(_splitmix64(_splitmix64(s) ^ u) ^ (i * np.uint64(0x9E3779B97F4A7C15)))


def _check_frame(df: pd.DataFrame) -> None:
    missing = {"user_idx", "item_idx"} - set(df.columns)
    if missing:
        raise DataError(f"interactions frame lacks columns {sorted(missing)}")


def _check_fraction(name: str, value: float, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        raise InvalidArgumentError(f"{name} must be in [0, 1{']' if upper_inclusive else ')'}, got {value}")


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def _rank_within_user(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given a row order sorted by (user, key), return each row's 0-based rank and its user's count.

    Args:
        users: User index of every row (original row order).
        order: Permutation of rows, grouped by user and sorted inside a group.

    Returns:
        ``(rank, count)`` arrays in the original row order.
    """
    n = len(users)
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, n])
    group_start = np.repeat(starts, counts)
    rank_sorted = np.arange(n) - group_start
    count_sorted = np.repeat(counts, counts)
    rank = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    count[order] = count_sorted
    return rank, count


def _tail_split(rank: np.ndarray, count: np.ndarray, n_test: np.ndarray, n_val: np.ndarray) -> np.ndarray:
    """Label the last ``n_test`` ranks of each user ``test``, the ``n_val`` before them ``val``."""
    labels = np.full(len(rank), TRAIN, dtype=object)
    from_end = count - 1 - rank  # 0 for the last interaction of the user
    labels[from_end < n_val + n_test] = VAL
    labels[from_end < n_test] = TEST
    return labels


def _held_out_counts(count: np.ndarray, test_fraction: float, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row test / val counts for the row's user, always leaving >= 1 training interaction."""
    n_test = np.minimum(_round_half_up(count * test_fraction), np.maximum(count - 1, 0))
    rest = count - n_test
    n_val = np.minimum(_round_half_up(rest * val_fraction), np.maximum(rest - 1, 0))
    return n_test, n_val


def _with_split(df: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    out = df.copy()
    out["split"] = pd.Series(labels, index=df.index, dtype=object).astype(str)
    return out


def fixed(df: pd.DataFrame, *, val_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Keep the data's own train / test split; carve a per-user random validation part from train.

    This is the split of datasets that ship one (the LightGCN / NGCF Gowalla files). Rows already
    labelled ``val`` stay ``val`` (and no further validation is carved for that user's rows).

    Args:
        df: Interactions with a ``split`` column holding ``train`` / ``test`` (optionally ``val``).
        val_fraction: Fraction of each user's training interactions moved to ``val``.
        seed: Seed of the validation draw.

    Raises:
        DataError: If the frame has no ``split`` column or unknown labels.
        InvalidArgumentError: If ``val_fraction`` is outside [0, 1).
    """
    _check_frame(df)
    _check_fraction("val_fraction", val_fraction)
    if "split" not in df.columns:
        raise DataError("the 'fixed' split needs the data's own 'split' column (train/test)")
    own = df["split"].astype(str).to_numpy()
    bad = set(np.unique(own)) - {TRAIN, VAL, TEST}
    if bad:
        raise DataError(f"unknown split labels {sorted(bad)} in the data's own split")
    labels = own.astype(object).copy()
    is_train = own == TRAIN
    if val_fraction > 0 and is_train.any():
        rows = np.flatnonzero(is_train)
        users = df["user_idx"].to_numpy()[rows]
        keys = _pair_keys(users, df["item_idx"].to_numpy()[rows], seed)
        order = np.lexsort((keys, users))
        rank, count = _rank_within_user(users, order)
        _, n_val = _held_out_counts(count, 0.0, val_fraction)
        labels[rows] = _tail_split(rank, count, np.zeros_like(n_val), n_val)
    return _with_split(df, labels)


def per_user_random(
    df: pd.DataFrame, *, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """Hold out a random fraction of each user's interactions for test, then for validation.

    Args:
        df: Interactions.
        test_fraction: Fraction of each user's interactions in ``test``.
        val_fraction: Fraction of each user's remaining interactions in ``val``.
        seed: Seed of the draw.

    Raises:
        InvalidArgumentError: If a fraction is outside [0, 1).
    """
    _check_frame(df)
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    users = df["user_idx"].to_numpy()
    keys = _pair_keys(users, df["item_idx"].to_numpy(), seed)
    order = np.lexsort((keys, users))
    rank, count = _rank_within_user(users, order)
    n_test, n_val = _held_out_counts(count, test_fraction, val_fraction)
    return _with_split(df, _tail_split(rank, count, n_test, n_val))


def _timestamps(df: pd.DataFrame) -> np.ndarray:
    if "timestamp" not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    return df["timestamp"].fillna(-1).to_numpy(dtype=np.int64)


def per_user_temporal(
    df: pd.DataFrame, *, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """Hold out each user's most recent interactions for test, the ones before them for validation.

    Interactions with equal timestamps (or unknown ones, ``-1``, which sort first) are ordered by
    the seeded hash, so ties are broken deterministically.

    Args:
        df: Interactions with a ``timestamp`` column.
        test_fraction: Fraction of each user's interactions (the latest) in ``test``.
        val_fraction: Fraction of each user's remaining interactions (the latest of those) in ``val``.
        seed: Seed used only to break timestamp ties.

    Raises:
        InvalidArgumentError: If a fraction is outside [0, 1).
    """
    _check_frame(df)
    _check_fraction("test_fraction", test_fraction)
    _check_fraction("val_fraction", val_fraction)
    users = df["user_idx"].to_numpy()
    keys = _pair_keys(users, df["item_idx"].to_numpy(), seed)
    order = np.lexsort((keys, _timestamps(df), users))
    rank, count = _rank_within_user(users, order)
    n_test, n_val = _held_out_counts(count, test_fraction, val_fraction)
    return _with_split(df, _tail_split(rank, count, n_test, n_val))


def leave_one_out(
    df: pd.DataFrame, *, val: bool = True, order: str = "temporal", seed: int = 0
) -> pd.DataFrame:
    """Hold out one interaction per user for test and (optionally) the one before it for validation.

    Users with one interaction stay in train; users with two give one to test and none to
    validation.

    Args:
        df: Interactions.
        val: Also hold out one interaction per user for validation.
        order: ``temporal`` (latest interaction is the test one; ties broken by the seeded hash)
            or ``random``.
        seed: Seed of the draw / tie breaking.

    Raises:
        InvalidArgumentError: If ``order`` is unknown.
    """
    _check_frame(df)
    if order not in ("temporal", "random"):
        raise InvalidArgumentError(f"order must be 'temporal' or 'random', got {order!r}")
    users = df["user_idx"].to_numpy()
    keys = _pair_keys(users, df["item_idx"].to_numpy(), seed)
    if order == "temporal":
        perm = np.lexsort((keys, _timestamps(df), users))
    else:
        perm = np.lexsort((keys, users))
    rank, count = _rank_within_user(users, perm)
    n_test = (count >= 2).astype(np.int64)
    n_val = ((count >= 3) & val).astype(np.int64)
    return _with_split(df, _tail_split(rank, count, n_test, n_val))


#: Registry of split functions by name (the ``SplitSpec.name`` values).
SPLITS: dict[str, Callable[..., pd.DataFrame]] = {
    "fixed": fixed,
    "per_user_random": per_user_random,
    "per_user_temporal": per_user_temporal,
    "leave_one_out": leave_one_out,
}


def register_split(name: str, fn: Callable[..., pd.DataFrame]) -> None:
    """Register a new named split function (``fn(df, *, seed, **params) -> df``)."""
    if name in SPLITS:
        raise InvalidArgumentError(f"split {name!r} is already registered")
    SPLITS[name] = fn


def apply_split(df: pd.DataFrame, spec: SplitSpec, seed: int | None = None) -> pd.DataFrame:
    """Apply the split named by ``spec`` with its params.

    Args:
        df: Interactions frame (see module docstring).
        spec: Split name and keyword params. A ``seed`` in ``spec.params`` is used unless
            ``seed`` is given here.
        seed: Seed passed to the split function (default: ``spec.params['seed']`` or 0).

    Returns:
        A copy of ``df`` with a ``split`` column of ``train`` / ``val`` / ``test``.

    Raises:
        InvalidArgumentError: Unknown split name or bad params.
        DataError: The frame does not fit the split (e.g. ``fixed`` without a ``split`` column).
    """
    fn = SPLITS.get(spec.name)
    if fn is None:
        raise InvalidArgumentError(f"unknown split {spec.name!r}; known: {sorted(SPLITS)}")
    params = dict(spec.params)
    params["seed"] = int(seed if seed is not None else params.get("seed", 0))
    try:
        inspect.signature(fn).bind(df, **params)
    except TypeError as e:
        raise InvalidArgumentError(f"bad parameters for split {spec.name!r}: {e}") from e
    return fn(df, **params)


__all__ = [
    "SPLITS",
    "SplitSpec",
    "SplitFunction",
    "apply_split",
    "fixed",
    "leave_one_out",
    "per_user_random",
    "per_user_temporal",
    "register_split",
]
