"""Batched, parameterised writes of :class:`graphrec.frames.DatasetFrames` into one generation.

Each phase turns a frame into fixed-size chunks of rows and runs one ``UNWIND $rows AS row``
statement per chunk, in its own transaction. Two statement sets exist:

* ``create``: for a fresh generation (a ``replace`` load, or the first load of a dataset). The
  generation is empty and the frames are validated (unique keys), so ``CREATE`` is safe and
  much faster than ``MERGE``.
* ``merge``: for an ``upsert`` into the active generation; running it twice changes nothing.

Interactions and tag applications are sent grouped by user (one row per user with parallel
lists), sorted by user: one index seek per user instead of one per interaction, and a user's
relationships are written by one transaction (no lock contention between batches).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from graph.schema import ATTRIBUTE_LABELS, ATTRIBUTE_RELS, check_label, check_rel_type
from graphrec.frames import DatasetFrames

WriteKind = Literal["create", "merge"]

USERS: dict[WriteKind, str] = {
    "create": "UNWIND $rows AS id CREATE (:`User` {dataset: $dataset, gen: $gen, id: id})",
    "merge": "UNWIND $rows AS id MERGE (:`User` {dataset: $dataset, gen: $gen, id: id})",
}

ITEMS: dict[WriteKind, str] = {
    "create": (
        "UNWIND $rows AS row "
        "CREATE (:`Item` {dataset: $dataset, gen: $gen, id: row.id, title: row.title, year: row.year, text: row.text})"
    ),
    "merge": (
        "UNWIND $rows AS row "
        "MERGE (i:`Item` {dataset: $dataset, gen: $gen, id: row.id}) "
        "SET i.title = row.title, i.year = row.year, i.text = row.text"
    ),
}

INTERACTIONS: dict[WriteKind, str] = {
    "create": (
        "UNWIND $rows AS row "
        "MATCH (u:`User` {dataset: $dataset, gen: $gen, id: row.u}) "
        "UNWIND range(0, size(row.i) - 1) AS k "
        "MATCH (it:`Item` {dataset: $dataset, gen: $gen, id: row.i[k]}) "
        "CREATE (u)-[:`INTERACTED` {rating: row.r[k], ts: row.t[k], split: row.s[k], source: 'load'}]->(it)"
    ),
    "merge": (
        "UNWIND $rows AS row "
        "MATCH (u:`User` {dataset: $dataset, gen: $gen, id: row.u}) "
        "UNWIND range(0, size(row.i) - 1) AS k "
        "MATCH (it:`Item` {dataset: $dataset, gen: $gen, id: row.i[k]}) "
        "MERGE (u)-[x:`INTERACTED`]->(it) "
        "ON CREATE SET x.source = 'load' "
        "SET x.rating = row.r[k], x.ts = row.t[k], x.split = row.s[k]"
    ),
}

TAGGED: dict[WriteKind, str] = {
    "create": (
        "UNWIND $rows AS row "
        "MATCH (u:`User` {dataset: $dataset, gen: $gen, id: row.u}) "
        "UNWIND range(0, size(row.i) - 1) AS k "
        "MATCH (it:`Item` {dataset: $dataset, gen: $gen, id: row.i[k]}) "
        "CREATE (u)-[:`TAGGED` {tag: row.g[k], ts: row.t[k]}]->(it)"
    ),
    "merge": (
        "UNWIND $rows AS row "
        "MATCH (u:`User` {dataset: $dataset, gen: $gen, id: row.u}) "
        "UNWIND range(0, size(row.i) - 1) AS k "
        "MATCH (it:`Item` {dataset: $dataset, gen: $gen, id: row.i[k]}) "
        "MERGE (u)-[x:`TAGGED` {tag: row.g[k]}]->(it) "
        "SET x.ts = row.t[k]"
    ),
}


def attribute_nodes_query(label: str, kind: WriteKind) -> str:
    """Statement writing attribute nodes (rows: names) of an allow-listed label."""
    label = check_label(label)
    verb = "CREATE" if kind == "create" else "MERGE"
    return f"UNWIND $rows AS name {verb} (:`{label}` {{dataset: $dataset, gen: $gen, name: name}})"


def attribute_rels_query(label: str, rel_type: str, kind: WriteKind) -> str:
    """Statement linking items to attribute nodes (rows: ``{i: item id, v: value, c: count or null}``)."""
    label = check_label(label)
    rel_type = check_rel_type(rel_type)
    head = (
        "UNWIND $rows AS row "
        "MATCH (i:`Item` {dataset: $dataset, gen: $gen, id: row.i}) "
        f"MATCH (a:`{label}` {{dataset: $dataset, gen: $gen, name: row.v}}) "
    )
    if kind == "create":
        return head + f"CREATE (i)-[:`{rel_type}` {{count: row.c}}]->(a)"
    return head + f"MERGE (i)-[x:`{rel_type}`]->(a) SET x.count = row.c"


@dataclass
class Phase:
    """One write phase: a statement and its chunks of rows.

    Attributes:
        name: Phase name shown in the progress bar and summary (``users``, ``interactions``...).
        query: The ``UNWIND $rows`` statement.
        total: Number of logical rows (nodes or relationships) the phase writes.
        batches: Callable producing ``(rows, logical row count)`` chunks.
    """

    name: str
    query: str
    total: int
    batches: Callable[[], Iterator[tuple[list[Any], int]]]


def _chunks(rows: Sequence[Any], size: int) -> Iterator[tuple[list[Any], int]]:
    for start in range(0, len(rows), size):
        chunk = list(rows[start : start + size])
        yield chunk, len(chunk)


def _nullable_list(values: pd.Series) -> list[Any] | None:
    """Python list with None for missing values; None when every value is missing (saves payload)."""
    if len(values) == 0 or values.isna().all():
        return None
    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype="float64")
        out = arr.astype(object)
        out[np.isnan(arr)] = None
        return out.tolist()
    return values.astype(object).where(values.notna(), None).tolist()


def grouped_by_user(frame: pd.DataFrame, columns: dict[str, pd.Series | None], size: int) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Chunks of per-user rows ``{u, i: [...], <key>: [...]}`` holding about ``size`` interactions each.

    Rows are sorted by user (stable), so every user's relationships go in one chunk unless the
    user alone has more than ``size`` of them.
    """
    n = len(frame)
    if n == 0:
        return
    codes, uniques = pd.factorize(frame["user_id"], sort=False)
    order = np.argsort(codes, kind="stable")
    codes_sorted = codes[order]
    items = frame["item_id"].to_numpy(dtype=object)[order].tolist()
    extra = {k: (None if v is None else _nullable_list(v.iloc[order].reset_index(drop=True))) for k, v in columns.items()}
    bounds = np.flatnonzero(np.diff(codes_sorted)) + 1
    starts = np.concatenate(([0], bounds)).tolist()
    ends = np.concatenate((bounds, [n])).tolist()
    user_ids = np.asarray(uniques, dtype=object)[codes_sorted[starts]].tolist()
    batch: list[dict[str, Any]] = []
    count = 0
    for uid, s, e in zip(user_ids, starts, ends):
        while s < e:
            take = min(e - s, max(1, size - count))
            row: dict[str, Any] = {"u": uid, "i": items[s : s + take]}
            for k, vals in extra.items():
                if vals is not None:
                    row[k] = vals[s : s + take]
            batch.append(row)
            count += take
            s += take
            if count >= size:
                yield batch, count
                batch, count = [], 0
    if batch:
        yield batch, count


def _item_rows(items: pd.DataFrame) -> list[dict[str, Any]]:
    years = items["year"].astype(object).where(items["year"].notna(), None).tolist()
    return [
        {"id": i, "title": t, "year": (int(y) if y is not None else None), "text": x}
        for i, t, y, x in zip(items["id"].tolist(), items["title"].tolist(), years, items["text"].tolist())
    ]


def attribute_links(frames: DatasetFrames, column: str) -> pd.DataFrame:
    """Item-attribute pairs of one list column, with a count for tags (how many users applied it)."""
    exploded = frames.items[["id", column]].explode(column).dropna()
    pairs = pd.DataFrame({"i": exploded["id"].astype(str).to_numpy(dtype=object), "v": exploded[column].astype(str).to_numpy(dtype=object)})
    pairs = pairs.drop_duplicates().reset_index(drop=True)
    if column == "tags" and len(frames.tag_applications):
        tags = frames.tag_applications
        applied = pd.DataFrame(
            {"i": tags["item_id"].astype(str).to_numpy(dtype=object), "v": tags["tag"].astype(str).str.strip().str.lower().to_numpy(dtype=object)}
        )
        counts = applied.value_counts().rename("c").reset_index()
        pairs = pairs.merge(counts, on=["i", "v"], how="left")
        pairs["c"] = pd.Series([None if pd.isna(c) else int(c) for c in pairs["c"]], index=pairs.index, dtype=object)
    else:
        pairs["c"] = pd.Series([None] * len(pairs), index=pairs.index, dtype=object)
    return pairs


def build_phases(frames: DatasetFrames, kind: WriteKind, batch_size: int) -> list[Phase]:
    """The write phases of a load, in dependency order (nodes before the relationships between them)."""
    phases: list[Phase] = []
    users = frames.users["id"].astype(str).tolist()
    phases.append(Phase("users", USERS[kind], len(users), lambda: _chunks(users, batch_size)))
    item_rows = _item_rows(frames.items)
    phases.append(Phase("items", ITEMS[kind], len(item_rows), lambda: _chunks(item_rows, batch_size)))
    links: dict[str, pd.DataFrame] = {}
    for column, label in ATTRIBUTE_LABELS.items():
        pairs = attribute_links(frames, column)
        if pairs.empty:
            continue
        links[column] = pairs
        names = sorted(set(pairs["v"]))
        phases.append(Phase(f"{label.lower()} nodes", attribute_nodes_query(label, kind), len(names), lambda names=names: _chunks(names, batch_size)))
    for column, pairs in links.items():
        label, rel = ATTRIBUTE_LABELS[column], ATTRIBUTE_RELS[column]
        rows = pairs.to_dict("records")
        phases.append(Phase(rel, attribute_rels_query(label, rel, kind), len(rows), lambda rows=rows: _chunks(rows, batch_size)))
    inter = frames.interactions
    cols = {"r": inter["rating"], "t": inter["timestamp"], "s": inter["split"]}
    phases.append(Phase("interactions", INTERACTIONS[kind], len(inter), lambda: grouped_by_user(inter, cols, batch_size)))
    tags = frames.tag_applications
    if len(tags):
        tcols = {"g": tags["tag"], "t": tags["timestamp"]}
        phases.append(Phase("tag applications", TAGGED[kind], len(tags), lambda: grouped_by_user(tags, tcols, batch_size)))
    return phases
