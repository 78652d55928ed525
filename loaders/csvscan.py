"""Vectorised structural validation of delimited text files, exact to the physical line.

:func:`scan_table` reads a delimited file (CSV with quotes, ``|``/tab separated, or MovieLens-1M
``::``), finds every record's physical line number, rejects records that cannot be decoded or
have the wrong number of fields, and hands the clean remainder to pandas' C parser. All columns
come back as strings so that value checks (ids, ratings, timestamps) can report the raw text.

The structural pass works on the raw bytes with numpy (positions of quotes, newlines and
separators), in chunks that end on record boundaries, so that it stays linear and bounded in
memory even for the 25-million-line ``ratings.csv`` of ml-25m.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.errors import DataError
from graphrec.frames import Problem

_CHUNK = 32 * 1024 * 1024
_NL = 10
_QUOTE = 34
_SUBST = b"\x1f"  # stand-in for multi-byte separators (MovieLens-1M '::')


@dataclass
class ScannedTable:
    """The structurally valid rows of one file.

    Attributes:
        file: File name used in problem reports.
        frame: One row per valid record; every column as strings, empty string for empty fields.
        lines: Physical 1-based line number of each row of ``frame``.
        rows_read: Data records seen (valid or not; header and blank lines excluded).
    """

    file: str
    frame: pd.DataFrame
    lines: np.ndarray
    rows_read: int


def _record_structure(arr: np.ndarray, sep: int, quoting: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return record starts, ends (exclusive, at the newline) and field counts for a byte array.

    Newlines and separators inside double quotes do not count when ``quoting`` is on.
    """
    starts_all: list[np.ndarray] = []
    ends_all: list[np.ndarray] = []
    counts_all: list[np.ndarray] = []
    n = len(arr)
    pos = 0
    size = _CHUNK
    while pos < n:
        stop = min(n, pos + size)
        chunk = arr[pos:stop]
        qpos = np.flatnonzero(chunk == _QUOTE) if quoting else np.array([], dtype=np.int64)
        nl = np.flatnonzero(chunk == _NL)
        sp = np.flatnonzero(chunk == sep)
        if len(qpos):
            # a position is inside quotes when an odd number of quotes precede it
            nl = nl[np.searchsorted(qpos, nl) % 2 == 0]
            sp = sp[np.searchsorted(qpos, sp) % 2 == 0]
        if stop < n:
            if len(nl) == 0:
                size *= 2  # no record boundary in this chunk: retry with a larger one
                continue
            cut = int(nl[-1]) + 1
        else:
            cut = stop - pos
        size = _CHUNK
        nl = nl[nl < cut]
        sp = sp[sp < cut]
        ends = nl
        if cut > 0 and (len(nl) == 0 or nl[-1] != cut - 1):
            ends = np.append(nl, cut)  # last record without a final newline
        starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.array([], dtype=np.int64)
        rec = np.searchsorted(ends, sp)
        counts = np.bincount(rec, minlength=len(ends)) + 1
        starts_all.append(starts + pos)
        ends_all.append(ends + pos)
        counts_all.append(counts)
        pos += cut
    if not starts_all:
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(starts_all), np.concatenate(ends_all), np.concatenate(counts_all)


def _bad_encoding_records(data: bytes, ends: np.ndarray, encoding: str, limit: int) -> list[int]:
    """Indices of records holding bytes that ``encoding`` cannot decode (at most ``limit``)."""
    bad: list[int] = []
    pos = 0
    while pos < len(data) and len(bad) < limit:
        try:
            data[pos:].decode(encoding)
            break
        except UnicodeDecodeError as e:
            rec = int(np.searchsorted(ends, pos + e.start))
            bad.append(rec)
            if rec >= len(ends):
                break
            pos = int(ends[rec]) + 1
    return bad


def scan_table(
    path: str | os.PathLike[str],
    *,
    sep: str = ",",
    header: bool = True,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: bool = True,
    problems: list[Problem],
    max_encoding_errors: int = 100_000,
) -> ScannedTable:
    """Read a delimited file, rejecting undecodable records and records with the wrong field count.

    Args:
        path: The file.
        sep: Field separator (one character, or ``::`` for MovieLens-1M).
        header: Whether the first non-blank line holds the column names.
        names: Column names when the file has no header (required then); with a header they
            override nothing and are ignored.
        encoding: Text encoding (``utf-8`` or ``latin-1``).
        quoting: Honour double quotes (CSV); off for formats that never quote.
        problems: Rejected records are appended here as :class:`Problem`.
        max_encoding_errors: Stop looking for undecodable records after this many.

    Returns:
        The valid records with their physical line numbers.

    Raises:
        DataError: The file is missing or unreadable, or has no header.
    """
    p = Path(path)
    fname = p.name
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {p}: {e}") from e
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # UTF-8 byte order mark
    if len(sep) > 1:
        if _SUBST in data:
            raise DataError(f"{p} contains the control byte 0x1f; cannot split on {sep!r}")
        data = data.replace(sep.encode("ascii"), _SUBST)
        sep_byte = _SUBST[0]
        pd_sep = _SUBST.decode("ascii")
    else:
        sep_byte = sep.encode("ascii")[0]
        pd_sep = sep
    if quoting and b'"' not in data:
        quoting_eff = False
    else:
        quoting_eff = quoting
    arr = np.frombuffer(data, dtype=np.uint8)
    starts, ends, counts = _record_structure(arr, sep_byte, quoting_eff)

    # physical line numbers: 1 + number of newlines (quoted or not) before the record start
    all_nl = np.flatnonzero(arr == _NL)
    line_of = np.searchsorted(all_nl, starts) + 1
    # blank records ('' or '\r')
    length = ends - starts
    last_is_cr = np.zeros(len(ends), dtype=bool)
    nonempty = length > 0
    last_is_cr[nonempty] = arr[ends[nonempty] - 1] == 13
    blank = (length == 0) | ((length == 1) & last_is_cr)

    rec_idx = np.flatnonzero(~blank)
    if header:
        if len(rec_idx) == 0:
            raise DataError(f"{p} is empty (expected a header line)")
        h = int(rec_idx[0])
        try:
            header_text = data[starts[h] : ends[h]].decode(encoding).rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError(f"{fname}:{line_of[h]}: bad encoding in the header line: {e}") from e
        header_text = header_text.lstrip("\ufeff")
        if len(sep) > 1:
            col_names = header_text.split(_SUBST.decode("ascii"))
        else:
            col_names = next(csv.reader([header_text], delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE))
        col_names = [c.strip() for c in col_names]
        rec_idx = rec_idx[1:]
    else:
        if names is None:
            raise DataError("scan_table: names are required when the file has no header")
        col_names = list(names)
        h = -1
    n_cols = len(col_names)

    bad = np.zeros(len(starts), dtype=bool)
    reasons: dict[int, str] = {}
    if encoding.lower().replace("_", "-") not in ("latin-1", "latin1", "iso-8859-1"):
        for r in _bad_encoding_records(data, ends, encoding, max_encoding_errors):
            if r < len(bad) and r != h and not blank[r]:
                bad[r] = True
                reasons[r] = f"bad encoding: not {encoding}"
    wrong = np.zeros(len(starts), dtype=bool)
    wrong[rec_idx] = counts[rec_idx] != n_cols
    wrong &= ~bad
    for r in np.flatnonzero(wrong).tolist():
        reasons[r] = f"wrong column count: expected {n_cols}, got {int(counts[r])}"
    bad |= wrong
    for r in sorted(reasons):
        problems.append(Problem(fname, int(line_of[r]), reasons[r]))

    good = np.zeros(len(starts), dtype=bool)
    good[rec_idx] = True
    good &= ~bad
    drop = ~good
    if header:
        drop[h] = True
    if drop.any():
        delta = np.zeros(len(arr) + 2, dtype=np.int32)
        d_starts = starts[drop]
        d_ends = np.minimum(ends[drop] + 1, len(arr))
        np.add.at(delta, d_starts, 1)
        np.add.at(delta, d_ends, -1)
        keep_bytes = np.cumsum(delta[: len(arr)]) == 0
        clean = arr[keep_bytes].tobytes()
    else:
        clean = data
    n_good = int(good.sum())
    if n_good == 0:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in col_names})
    else:
        try:
            frame = pd.read_csv(
                io.BytesIO(clean),
                sep=pd_sep,
                header=None,
                names=col_names,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                quoting=csv.QUOTE_MINIMAL if quoting_eff else csv.QUOTE_NONE,
                encoding=encoding,
                skip_blank_lines=False,
                engine="c",
            )
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"cannot parse {p}: {e}") from e
        if len(frame) != n_good:
            raise DataError(f"cannot parse {p}: found {n_good} records but the parser read {len(frame)}")
    return ScannedTable(file=fname, frame=frame, lines=line_of[good], rows_read=len(rec_idx))
