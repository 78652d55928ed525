"""Reader for the LightGCN / NGCF split format (``train.txt``, ``test.txt``, optional id lists).

Layout of a dataset folder (as in the LightGCN repository, e.g. Gowalla)::

    train.txt      one line per user: ``user_id item_id item_id ...`` (whitespace separated, 0-based ints)
    test.txt       same layout; the held-out interactions
    user_list.txt  optional: header ``org_id remap_id``, then one user per line
    item_list.txt  optional: header ``org_id remap_id``, then one item per line

External ids are the remapped integers written as strings (``"0"``, ``"1"``...), so that row
positions of the sorted users/items frames equal the integer ids in the files. Interactions from
``train.txt`` get ``split='train'``, those from ``test.txt`` ``split='test'``; the files carry no
rating or timestamp (implicit feedback: NaN rating, null timestamp).

Parsing is vectorised with numpy (one ``split`` per line, one integer conversion for the whole
file); the full Gowalla split (1,027,370 interactions) reads in about a second.

Rejected rows (reported as :class:`~graphrec.frames.Problem` with file, line and reason, then left
out): undecodable bytes, a non-integer or negative id, a user listed twice in one file, an item
repeated for the same user, a pair present in both train and test (the test copy is rejected),
and, when the id lists exist, a user or item missing from them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.errors import DataError
from graphrec.frames import DatasetFrames, Problem, normalise_interactions, normalise_items

SPLIT_FILES: tuple[tuple[str, str], ...] = (("train.txt", "train"), ("test.txt", "test"))


class _SplitFile:
    """Parsed content of one split file: per-interaction arrays plus per-line user ids."""

    def __init__(self, users: np.ndarray, items: np.ndarray, lines: np.ndarray, line_users: np.ndarray, line_numbers: np.ndarray) -> None:
        self.users = users  # int64 user id of each interaction
        self.items = items  # int64 item id of each interaction
        self.lines = lines  # 1-based line number of each interaction
        self.line_users = line_users  # user id of every accepted line (also lines with no items)
        self.line_numbers = line_numbers  # line number of every accepted line


def _parse_split_file(path: Path, problems: list[Problem]) -> tuple[_SplitFile, int]:
    """Parse one ``user item item ...`` file.

    Returns:
        The parsed arrays and the rows read: user-item pairs on parsed lines plus rejected lines.
    """
    fname = path.name
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    tokens: list[list[bytes]] = []
    line_numbers: list[int] = []
    n_rows = 0
    for lineno, raw in enumerate(raw_lines, start=1):
        toks = raw.split()
        if not toks:
            continue  # blank line (also the one after the final newline)
        n_rows += 1
        joined = b"".join(toks)
        if not joined.isdigit():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(Problem(fname, lineno, "bad encoding: not UTF-8"))
                continue
            bad = next(t for t in toks if not t.isdigit()).decode("utf-8", "replace")
            problems.append(Problem(fname, lineno, f"non-integer id {bad!r} (expected non-negative integers)"))
            continue
        tokens.append(toks)
        line_numbers.append(lineno)
    n_lines = len(tokens)
    lens = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=n_lines)
    flat = np.array([tok for toks in tokens for tok in toks], dtype=np.int64) if n_lines else np.array([], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    line_users = flat[starts] if n_lines else np.array([], dtype=np.int64)
    lnums = np.asarray(line_numbers, dtype=np.int64)

    # a user on two lines of the same file: keep the first line, reject the others
    dup_line = pd.Series(line_users).duplicated(keep="first").to_numpy()
    if dup_line.any():
        first_line = dict(zip(line_users[~dup_line].tolist(), lnums[~dup_line].tolist()))
        for u, ln in zip(line_users[dup_line].tolist(), lnums[dup_line].tolist()):
            problems.append(Problem(fname, ln, f"duplicate key: user {u} already listed on line {first_line[u]}"))
    keep_line = ~dup_line

    is_item = np.ones(len(flat), dtype=bool)
    is_item[starts] = False
    per_token_line = np.repeat(np.arange(n_lines), lens)
    item_mask = is_item & keep_line[per_token_line]
    users = np.repeat(line_users, lens)[item_mask]
    items = flat[item_mask]
    lines = lnums[per_token_line][item_mask]
    parsed = _SplitFile(users, items, lines, line_users[keep_line], lnums[keep_line])
    # rows read = user-item pairs on the parsed lines + lines rejected as a whole
    return parsed, int(lens.sum() - n_lines) + (n_rows - n_lines)


def _reject(parsed: _SplitFile, mask: np.ndarray, fname: str, reason_fmt: str, problems: list[Problem]) -> _SplitFile:
    """Drop interactions where ``mask`` is true, reporting each with ``reason_fmt.format(u=..., i=...)``."""
    if mask.any():
        for u, i, ln in zip(parsed.users[mask].tolist(), parsed.items[mask].tolist(), parsed.lines[mask].tolist()):
            problems.append(Problem(fname, ln, reason_fmt.format(u=u, i=i)))
        keep = ~mask
        return _SplitFile(parsed.users[keep], parsed.items[keep], parsed.lines[keep], parsed.line_users, parsed.line_numbers)
    return parsed


def _read_id_list(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    """Read ``org_id remap_id`` lists; returns columns ``org_id`` (str) and ``remap_id`` (int64), or None if absent."""
    if not path.exists():
        return None
    fname = path.name
    org: list[str] = []
    remap: list[int] = []
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        toks = raw.split()
        if not toks:
            continue
        if lineno == 1 and not toks[-1].isdigit():
            continue  # header line
        try:
            text_toks = [t.decode("utf-8") for t in toks]
        except UnicodeDecodeError:
            problems.append(Problem(fname, lineno, "bad encoding: not UTF-8"))
            continue
        if len(toks) != 2:
            problems.append(Problem(fname, lineno, f"wrong column count: expected 2, got {len(toks)}"))
            continue
        if not toks[1].isdigit():
            problems.append(Problem(fname, lineno, f"non-integer remap_id {text_toks[1]!r}"))
            continue
        rid = int(toks[1])
        if rid in seen:
            problems.append(Problem(fname, lineno, f"duplicate key: remap_id {rid} already on line {seen[rid]}"))
            continue
        seen[rid] = lineno
        org.append(text_toks[0])
        remap.append(rid)
    return pd.DataFrame({"org_id": org, "remap_id": np.asarray(remap, dtype=np.int64)})


def _id_strings(ids: np.ndarray) -> pd.Series:
    """Non-negative integer ids -> pandas string Series of their decimal forms (each distinct id converted once)."""
    if len(ids) == 0:
        return pd.Series([], dtype="str")
    table = np.array([str(v) for v in range(int(ids.max()) + 1)], dtype=object)
    return pd.Series(table[ids], dtype="str")


def _member(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Vectorised ``ids in known`` for non-negative integers (a boolean lookup table)."""
    top = int(max(ids.max(initial=0), known.max(initial=0))) + 1
    table = np.zeros(top, dtype=bool)
    table[known] = True
    return table[ids]


def read_lightgcn(path: str | os.PathLike[str], name: str = "gowalla") -> DatasetFrames:
    """Read a LightGCN-format folder into :class:`DatasetFrames`.

    Args:
        path: Folder holding ``train.txt`` and ``test.txt`` (and optionally ``user_list.txt`` /
            ``item_list.txt``).
        name: Dataset name to give the frames (default: ``gowalla``).

    Returns:
        Frames whose users and items are sorted by integer id; interactions carry
        ``split='train'`` or ``split='test'``. Rejected rows are in ``problems``.

    Raises:
        DataError: The folder or ``train.txt`` is missing.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"LightGCN dataset folder {root} does not exist")
    if not (root / "train.txt").exists():
        raise DataError(f"{root} has no train.txt (LightGCN format: train.txt, test.txt)")
    problems: list[Problem] = []
    rows_read: dict[str, int] = {}

    user_list = _read_id_list(root / "user_list.txt", problems)
    item_list = _read_id_list(root / "item_list.txt", problems)
    known_users = None if user_list is None else user_list["remap_id"].to_numpy()
    known_items = None if item_list is None else item_list["remap_id"].to_numpy()

    parsed: dict[str, _SplitFile] = {}
    for fname, split in SPLIT_FILES:
        fpath = root / fname
        if not fpath.exists():
            continue
        p, n = _parse_split_file(fpath, problems)
        rows_read[fname] = n
        if known_users is not None:
            bad_line = ~_member(p.line_users, known_users)
            for u, ln in zip(p.line_users[bad_line].tolist(), p.line_numbers[bad_line].tolist()):
                problems.append(Problem(fname, ln, f"unknown user {u} (not in user_list.txt)"))
            unknown = ~_member(p.users, known_users)
            p = _SplitFile(p.users[~unknown], p.items[~unknown], p.lines[~unknown], p.line_users[~bad_line], p.line_numbers[~bad_line])
        if known_items is not None:
            p = _reject(p, ~_member(p.items, known_items), fname, "unknown item {i} for user {u} (not in item_list.txt)", problems)
        pairs = pd.DataFrame({"u": p.users, "i": p.items})
        p = _reject(p, pairs.duplicated(keep="first").to_numpy(), fname, "duplicate key: item {i} repeated for user {u}", problems)
        if split == "test" and "train" in parsed:
            tr = parsed["train"]
            key_tr = tr.users.astype(np.int64) * (int(max(tr.items.max(initial=0), p.items.max(initial=0))) + 1) + tr.items
            key_te = p.users.astype(np.int64) * (int(max(tr.items.max(initial=0), p.items.max(initial=0))) + 1) + p.items
            p = _reject(p, pd.Index(key_te).isin(key_tr), fname, "duplicate key: pair ({u}, {i}) is also in train.txt", problems)
        parsed[split] = p

    users_all = [p.line_users for p in parsed.values()]
    items_all = [p.items for p in parsed.values()]
    if known_users is not None:
        user_ids = np.sort(known_users)
    else:
        user_ids = np.unique(np.concatenate(users_all)) if users_all else np.array([], dtype=np.int64)
    if known_items is not None:
        item_ids = np.sort(known_items)
    else:
        item_ids = np.unique(np.concatenate(items_all)) if items_all else np.array([], dtype=np.int64)

    users = pd.DataFrame({"id": _id_strings(user_ids).to_numpy(dtype=object)})
    if user_list is not None:
        users["org_id"] = user_list.set_index("remap_id").loc[user_ids, "org_id"].to_numpy(dtype=object)
    items = pd.DataFrame({"id": _id_strings(item_ids).to_numpy(dtype=object)})
    items = normalise_items(items)

    frames = []
    for split, p in parsed.items():
        frames.append(
            pd.DataFrame(
                {
                    "user_id": _id_strings(p.users),
                    "item_id": _id_strings(p.items),
                    "rating": np.full(len(p.users), np.nan),
                    "timestamp": pd.arrays.IntegerArray(np.zeros(len(p.users), dtype=np.int64), np.ones(len(p.users), dtype=bool)),
                    "split": np.full(len(p.users), split, dtype=object),
                }
            )
        )
    interactions = normalise_interactions(pd.concat(frames, ignore_index=True)) if frames else normalise_interactions(pd.DataFrame({"user_id": [], "item_id": []}))
    return DatasetFrames(
        name=name,
        source=f"lightgcn:{root}",
        users=users,
        items=items,
        interactions=interactions,
        problems=problems,
        rows_read=rows_read,
    )
