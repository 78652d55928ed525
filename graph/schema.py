"""The property-graph model of graphrec and its schema (constraints and indexes).

Labels, relationship types and attribute kinds come from :mod:`graphrec.vocabulary` (re-exported here).

Several datasets live side by side in one database. Every data node carries ``dataset`` (str)
and ``gen`` (int, the load generation); ``(:Dataset {name, gen})`` names the *active* generation
(see :mod:`graph.datasets`)::

    (:Dataset {name, gen, loaded_at, source, mode, users, items, interactions, ...})
    (:User {dataset, gen, id})
    (:Item {dataset, gen, id, title, year, text})
    (:Genre|Tag|Category|Brand {dataset, gen, name})
    (:User)-[:INTERACTED {rating, ts, split, source}]->(:Item)
    (:User)-[:TAGGED {tag, ts}]->(:Item)
    (:Item)-[:HAS_GENRE]->(:Genre)      (:Item)-[:HAS_TAG {count}]->(:Tag)
    (:Item)-[:IN_CATEGORY]->(:Category) (:Item)-[:HAS_BRAND]->(:Brand)

Uniqueness: ``(dataset, gen, id)`` for users and items, ``(dataset, gen, name)`` for attribute
nodes (composite uniqueness constraints work on Neo4j 5.26 Community), ``name`` for datasets.
Range indexes on ``(dataset, gen)`` serve whole-generation scans (export, delete).

Every statement uses ``IF NOT EXISTS``, so :func:`ensure_schema` is safe to run again; it waits
for the indexes to come online.
"""

from __future__ import annotations

import neo4j
from pydantic import BaseModel

from graph.connection import read, write
from graphrec.vocabulary import (  # re-exported: the vocabulary is defined once, in graphrec.vocabulary
    ACTIVE_MODEL,
    ATTRIBUTE_LABELS,
    ATTRIBUTE_RELS,
    CO_LIKED,
    DATA_LABELS,
    DATASET,
    INTERACTED,
    ITEM,
    MODEL_RELS,
    NEIGHBOUR,
    NODE_LABELS,
    REL_TYPES,
    TAGGED,
    USER,
)

__all__ = [
    "ACTIVE_MODEL", "ATTRIBUTE_LABELS", "ATTRIBUTE_RELS", "CO_LIKED", "DATASET", "DATA_LABELS", "INTERACTED", "ITEM",
    "MODEL_RELS", "NEIGHBOUR", "NODE_LABELS", "REL_TYPES", "TAGGED", "USER", "SchemaObject", "SchemaReport",
    "check_label", "check_rel_type", "describe_schema", "ensure_schema", "key_property", "schema_statements",
]

_KEY = {USER: "id", ITEM: "id", **{label: "name" for label in ATTRIBUTE_LABELS.values()}}


def key_property(label: str) -> str:
    """The identifying property of a data label (``id`` or ``name``)."""
    return _KEY[check_label(label)]


def check_label(label: str) -> str:
    """Return ``label`` if it is one of :data:`NODE_LABELS`, else raise ``ValueError``."""
    if label not in NODE_LABELS:
        raise ValueError(f"unknown node label {label!r}; expected one of {NODE_LABELS}")
    return label


def check_rel_type(rel_type: str) -> str:
    """Return ``rel_type`` if it is one of :data:`REL_TYPES`, else raise ``ValueError``."""
    if rel_type not in REL_TYPES:
        raise ValueError(f"unknown relationship type {rel_type!r}; expected one of {REL_TYPES}")
    return rel_type


def _constraint_name(label: str) -> str:
    return f"graphrec_{label.lower()}_key"


def schema_statements() -> list[str]:
    """The DDL statements of the schema, all ``IF NOT EXISTS`` (labels from the allow-list, backtick-quoted)."""
    stmts = [f"CREATE CONSTRAINT graphrec_dataset_name IF NOT EXISTS FOR (d:`{DATASET}`) REQUIRE d.name IS UNIQUE"]
    for label in DATA_LABELS:
        key = key_property(label)
        stmts.append(
            f"CREATE CONSTRAINT {_constraint_name(label)} IF NOT EXISTS "
            f"FOR (n:`{label}`) REQUIRE (n.dataset, n.gen, n.`{key}`) IS UNIQUE"
        )
        stmts.append(f"CREATE INDEX graphrec_{label.lower()}_gen IF NOT EXISTS FOR (n:`{label}`) ON (n.dataset, n.gen)")
    return stmts


AWAIT_INDEXES = "CALL db.awaitIndexes($timeout)"
SHOW_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties WHERE name STARTS WITH 'graphrec_' RETURN name, type, labelsOrTypes, properties"
SHOW_INDEXES = "SHOW INDEXES YIELD name, state, labelsOrTypes, properties WHERE name STARTS WITH 'graphrec_' RETURN name, state, labelsOrTypes, properties"


class SchemaObject(BaseModel):
    """One constraint or index of the graphrec schema as the server reports it."""

    name: str
    kind: str
    labels: list[str]
    properties: list[str]
    state: str | None = None


class SchemaReport(BaseModel):
    """What :func:`ensure_schema` did."""

    statements: int
    created: int
    constraints: list[SchemaObject]
    indexes: list[SchemaObject]


def ensure_schema(driver: neo4j.Driver, database: str = "neo4j", timeout_s: int = 300) -> SchemaReport:
    """Create the constraints and indexes (if they do not exist) and wait until they are online.

    Args:
        driver: An open driver (the caller owns it).
        database: Database name.
        timeout_s: How long to wait for indexes to come online.

    Returns:
        How many statements ran, how many objects were created, and the schema as it now is.
    """
    created = 0
    stmts = schema_statements()
    for stmt in stmts:
        summary = write(driver, stmt, database=database)
        counters = summary.counters
        created += counters.constraints_added + counters.indexes_added
    write(driver, AWAIT_INDEXES, {"timeout": timeout_s}, database=database)
    return describe_schema(driver, database, created=created, statements=len(stmts))


def describe_schema(driver: neo4j.Driver, database: str = "neo4j", created: int = 0, statements: int = 0) -> SchemaReport:
    """The graphrec constraints and indexes currently in the database."""
    constraints = [
        SchemaObject(name=r["name"], kind=r["type"], labels=list(r["labelsOrTypes"] or []), properties=list(r["properties"] or []))
        for r in read(driver, SHOW_CONSTRAINTS, database=database)
    ]
    indexes = [
        SchemaObject(name=r["name"], kind="INDEX", labels=list(r["labelsOrTypes"] or []), properties=list(r["properties"] or []), state=r["state"])
        for r in read(driver, SHOW_INDEXES, database=database)
    ]
    return SchemaReport(statements=statements, created=created, constraints=constraints, indexes=indexes)
