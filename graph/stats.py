"""Counts of what is in the graph: by label and type (whole database), and per dataset generation.

The whole-database counts come from Neo4j's count store (``db.stats.retrieve('GRAPH COUNTS')``,
constant time); per-dataset counts use the ``(dataset, gen)`` indexes and node degrees, so they
stay fast on a million relationships.
"""

from __future__ import annotations

import neo4j
from pydantic import BaseModel

from graph.connection import read
from graph.datasets import DatasetInfo, list_datasets
from graph.schema import ATTRIBUTE_LABELS, ATTRIBUTE_RELS, INTERACTED, TAGGED

GRAPH_COUNTS = "CALL db.stats.retrieve('GRAPH COUNTS') YIELD data RETURN data"


def dataset_counts_query(labels: set[str] | None = None, types: set[str] | None = None) -> str:
    """The per-generation count query; labels/types absent from the database count as 0 (no warnings).

    Args:
        labels: Node labels present in the database (None: assume all of graphrec's).
        types: Relationship types present in the database (None: assume all of graphrec's).
    """

    def has_type(t: str) -> bool:
        return types is None or t in types

    def has_label(label: str) -> bool:
        return labels is None or label in labels

    def degree(rel: str, alias: str) -> str:
        return f"sum(COUNT {{ (n)-[:`{rel}`]->() }}) AS `{alias}`" if has_type(rel) else f"sum(0) AS `{alias}`"

    parts: list[str] = []
    user_cols = f"count(n) AS users, {degree(INTERACTED, 'interactions')}, {degree(TAGGED, 'tag_applications')}"
    if has_label("User"):
        parts.append(f"CALL () {{ MATCH (n:`User` {{dataset: $dataset, gen: $gen}}) RETURN {user_cols} }}")
    else:
        parts.append("CALL () { RETURN 0 AS users, 0 AS interactions, 0 AS tag_applications }")
    item_cols = ", ".join(degree(rel, rel) for rel in ATTRIBUTE_RELS.values())
    if has_label("Item"):
        parts.append(f"CALL () {{ MATCH (n:`Item` {{dataset: $dataset, gen: $gen}}) RETURN count(n) AS items, {item_cols} }}")
    else:
        zeros = ", ".join(f"0 AS `{rel}`" for rel in ATTRIBUTE_RELS.values())
        parts.append(f"CALL () {{ RETURN 0 AS items, {zeros} }}")
    for label in ATTRIBUTE_LABELS.values():
        if has_label(label):
            parts.append(f"CALL () {{ MATCH (n:`{label}` {{dataset: $dataset, gen: $gen}}) RETURN count(n) AS `{label}` }}")
        else:
            parts.append(f"CALL () {{ RETURN 0 AS `{label}` }}")
    returned = ["users", "items", "interactions", "tag_applications", *[f"`{v}`" for v in ATTRIBUTE_RELS.values()], *[f"`{v}`" for v in ATTRIBUTE_LABELS.values()]]
    return "\n".join(parts) + "\nRETURN " + ", ".join(returned)


class DatasetCounts(BaseModel):
    """Node and relationship counts of one generation of one dataset."""

    users: int = 0
    items: int = 0
    interactions: int = 0
    tag_applications: int = 0
    attributes: dict[str, int] = {}
    attribute_links: dict[str, int] = {}

    def flat(self) -> dict[str, int]:
        """One level of ``name: count`` (stored as ``count_<name>`` on the ``(:Dataset)`` node)."""
        out = {"users": self.users, "items": self.items, "interactions": self.interactions, "tag_applications": self.tag_applications}
        out.update({k.lower(): v for k, v in self.attributes.items()})
        out.update({k.lower(): v for k, v in self.attribute_links.items()})
        return out


def dataset_counts(driver: neo4j.Driver, dataset: str, gen: int, database: str = "neo4j") -> DatasetCounts:
    """Count the users, items, attribute nodes and relationships of one generation."""
    nodes, rels = count_store(driver, database)
    query = dataset_counts_query(set(nodes), set(rels))
    records = read(driver, query, {"dataset": dataset, "gen": gen}, database=database)
    r = records[0]
    return DatasetCounts(
        users=int(r["users"]),
        items=int(r["items"]),
        interactions=int(r["interactions"] or 0),
        tag_applications=int(r["tag_applications"] or 0),
        attributes={label: int(r[label]) for label in ATTRIBUTE_LABELS.values()},
        attribute_links={rel: int(r[rel] or 0) for rel in ATTRIBUTE_RELS.values()},
    )


class DatasetStats(BaseModel):
    """One dataset: its active generation, counts, and pending bookkeeping."""

    name: str
    active_generation: int | None
    loaded_at: str | None = None
    source: str | None = None
    counts: DatasetCounts | None = None
    garbage_generations: list[int] = []
    load_running: bool = False


class GraphStats(BaseModel):
    """What ``graphrec stats`` prints."""

    nodes: dict[str, int]
    relationships: dict[str, int]
    datasets: list[DatasetStats]


def count_store(driver: neo4j.Driver, database: str = "neo4j") -> tuple[dict[str, int], dict[str, int]]:
    """Nodes by label and relationships by type from the count store (labels with no nodes left out)."""
    data = read(driver, GRAPH_COUNTS, database=database)[0]["data"]
    nodes = {e["label"]: int(e["count"]) for e in data["nodes"] if "label" in e and int(e["count"]) > 0}
    rels = {
        e["relationshipType"]: int(e["count"])
        for e in data["relationships"]
        if "relationshipType" in e and "startLabel" not in e and "endLabel" not in e and int(e["count"]) > 0
    }
    return dict(sorted(nodes.items())), dict(sorted(rels.items()))


def _dataset_stats(driver: neo4j.Driver, info: DatasetInfo, database: str) -> DatasetStats:
    counts = dataset_counts(driver, info.name, info.gen, database) if info.gen is not None else None
    return DatasetStats(
        name=info.name,
        active_generation=info.gen,
        loaded_at=info.loaded_at,
        source=info.source,
        counts=counts,
        garbage_generations=[g for g in info.garbage if g != info.gen] + ([info.loading_gen] if info.loading_gen not in (None, info.gen) else []),
        load_running=info.loading_gen is not None,
    )


def graph_stats(driver: neo4j.Driver, database: str = "neo4j", dataset: str | None = None) -> GraphStats:
    """Counts by label and type for the database, and per dataset for its active generation."""
    nodes, rels = count_store(driver, database)
    datasets = [_dataset_stats(driver, info, database) for info in list_datasets(driver, database, dataset)]
    return GraphStats(nodes=nodes, relationships=rels, datasets=datasets)
