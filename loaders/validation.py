"""Row-level validation of scanned tables, vectorised with pandas, exact to the line.

A :class:`TableCheck` wraps one :class:`~loaders.csvscan.ScannedTable`. Each check method marks
the rows it rejects (only rows that are still valid get a report, so a row is reported once, with
the first reason found) and returns the parsed column. :func:`enforce_max_errors` turns the
collected problems into a :class:`graphrec.errors.ValidationFailedError` when they are too many.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from graphrec.errors import ValidationFailedError
from graphrec.frames import Problem
from loaders.csvscan import ScannedTable

MAX_REPORTED = 50
"""How many problems :func:`format_problems` prints before summarising the rest."""


class TableCheck:
    """Vectorised checks over the rows of one scanned file.

    Args:
        table: The structurally valid rows of a file.
        problems: Where rejected rows are reported.
    """

    def __init__(self, table: ScannedTable, problems: list[Problem]) -> None:
        self.table = table
        self.frame = table.frame.reset_index(drop=True)
        self.problems = problems
        self.ok = np.ones(len(self.frame), dtype=bool)

    @property
    def file(self) -> str:
        """The file name used in reports."""
        return self.table.file

    def has(self, column: str) -> bool:
        """Whether the file has ``column``."""
        return column in self.frame.columns

    def reject(self, mask: np.ndarray, reasons: str | Sequence[str] | pd.Series) -> None:
        """Reject rows where ``mask`` is true and still valid, with one reason each (or one for all)."""
        mask = np.asarray(mask, dtype=bool)
        new = mask & self.ok
        if not new.any():
            return
        idx = np.flatnonzero(new)
        if isinstance(reasons, str):
            texts = [reasons] * len(idx)
        else:
            arr = np.asarray(reasons, dtype=object)
            texts = arr[idx].tolist() if len(arr) == len(mask) else list(arr)
        lines = self.table.lines[idx].tolist()
        self.problems.extend(Problem(self.file, int(ln), str(t)) for ln, t in zip(lines, texts))
        self.ok &= ~new

    def text(self, column: str) -> pd.Series:
        """The column stripped of surrounding blanks (empty strings when the file lacks it)."""
        if column not in self.frame.columns:
            return pd.Series([""] * len(self.frame), dtype="str")
        return self.frame[column].astype("str").str.strip()

    def require(self, column: str, what: str | None = None) -> pd.Series:
        """Reject rows whose ``column`` is empty; return the stripped column."""
        values = self.text(column)
        self.reject((values == "").to_numpy(), f"missing {what or column}")
        return values

    def number(
        self,
        column: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        required: bool = False,
        integer: bool = False,
        what: str | None = None,
    ) -> pd.Series:
        """Parse a numeric column; reject unparsable, non-finite and out-of-range values.

        Args:
            column: Column name.
            lo: Smallest accepted value (inclusive).
            hi: Largest accepted value (inclusive).
            required: Reject empty values (otherwise they become NaN / null).
            integer: Require whole numbers (returns ``Int64``).
            what: Name used in reasons (default: the column name).

        Returns:
            float64 (or nullable Int64) values; NaN/null for empty or rejected rows.
        """
        name = what or column
        raw = self.text(column)
        empty = (raw == "").to_numpy()
        if required:
            self.reject(empty, f"missing {name}")
        values = pd.to_numeric(raw.where(~empty, None), errors="coerce").astype("float64")
        parsed = values.to_numpy()
        unparsable = ~empty & np.isnan(parsed)
        if unparsable.any():
            self.reject(unparsable, [f"unparsable {name} {v!r}" for v in raw.to_numpy(dtype=object)])
        nonfinite = ~empty & ~np.isnan(parsed) & ~np.isfinite(parsed)
        self.reject(nonfinite, f"unparsable {name} (not finite)")
        finite = np.isfinite(parsed)
        if integer:
            frac = finite & (np.floor(np.where(finite, parsed, 0)) != np.where(finite, parsed, 0))
            if frac.any():
                self.reject(frac, [f"unparsable {name} {v!r} (not a whole number)" for v in raw.to_numpy(dtype=object)])
        out_lo = finite & (parsed < lo) if lo is not None else np.zeros(len(parsed), dtype=bool)
        out_hi = finite & (parsed > hi) if hi is not None else np.zeros(len(parsed), dtype=bool)
        out = out_lo | out_hi
        if out.any():
            rng = f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"
            self.reject(out, [f"{name} {v} out of range {rng}" for v in raw.to_numpy(dtype=object)])
        bad = ~self.ok
        parsed = np.where(bad, np.nan, parsed)
        if integer:
            mask = np.isnan(parsed)
            return pd.Series(pd.arrays.IntegerArray(np.where(mask, 0, parsed).astype(np.int64), mask))
        return pd.Series(parsed)

    def unique(self, columns: Sequence[str], values: Sequence[pd.Series], what: str) -> None:
        """Reject the second and later rows (among valid ones) sharing the same key."""
        key = pd.DataFrame({c: v.to_numpy() for c, v in zip(columns, values)})
        valid = self.ok.copy()
        dup = np.zeros(len(key), dtype=bool)
        sub = key[valid]
        d = sub.duplicated(keep="first").to_numpy()
        if not d.any():
            return
        dup[np.flatnonzero(valid)[d]] = True
        first_rows = sub[~d]
        first_line = dict(zip(map(tuple, first_rows.to_numpy(dtype=object).tolist()), self.table.lines[np.flatnonzero(valid)[~d]].tolist()))
        keys = list(map(tuple, key.to_numpy(dtype=object).tolist()))
        reasons = [
            f"duplicate key: {what} {', '.join(map(str, k))} already on line {first_line.get(k, '?')}" if dup[i] else ""
            for i, k in enumerate(keys)
        ]
        self.reject(dup, reasons)

    def known(self, values: pd.Series, known: pd.Index | set[str], what: str) -> None:
        """Reject rows whose ``values`` are not in ``known`` (e.g. an interaction with an unknown item)."""
        index = known if isinstance(known, pd.Index) else pd.Index(list(known))
        missing = ~values.isin(index).to_numpy() & (values != "").to_numpy()
        if missing.any():
            self.reject(missing, [f"unknown {what} {v!r}" for v in values.to_numpy(dtype=object)])

    def lines(self) -> np.ndarray:
        """Line numbers of the rows still valid."""
        return self.table.lines[self.ok]


def format_problems(problems: Sequence[Problem], limit: int = MAX_REPORTED) -> str:
    """The problem report: one ``file:line: reason`` per line, at most ``limit``, then a count of the rest."""
    ordered = sorted(problems, key=lambda p: (p.file, p.line))
    lines = [str(p) for p in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"... and {len(ordered) - limit} more")
    return "\n".join(lines)


def enforce_max_errors(problems: Sequence[Problem], max_errors: int) -> None:
    """Raise :class:`ValidationFailedError` when more than ``max_errors`` rows were rejected.

    The message names the count per file and lists the first problems (file, line, reason).
    """
    if len(problems) <= max_errors:
        return
    per_file: dict[str, int] = {}
    for p in problems:
        per_file[p.file] = per_file.get(p.file, 0) + 1
    files = ", ".join(f"{f}: {n}" for f, n in sorted(per_file.items()))
    problems_sorted = sorted(problems, key=lambda p: (p.file, p.line))
    message = (
        f"{len(problems)} bad rows (more than --max-errors {max_errors}); nothing was written. "
        f"Rejected rows per file: {files}. First: {problems_sorted[0]}"
    )
    raise ValidationFailedError(message, problems=[p.as_tuple() for p in sorted(problems, key=lambda p: (p.file, p.line))])
