"""The vocabulary of graphrec's property graph: node labels, relationship types, item attribute kinds.

Every package that names a label, a relationship type or an item attribute column takes it from
here: the loaders (attribute columns of the item frame, CSV header aliases), the graph writer and
its readers (labels, relationship types, Cypher composed from them), the snapshot format, the text
recipe and the Neo4j Browser style. Nothing else defines them.

The graph::

    (:Dataset {name, gen, ...})
    (:User {dataset, gen, id})
    (:Item {dataset, gen, id, title, year, text})
    (:Genre|Tag|Category|Brand {dataset, gen, name})
    (:User)-[:INTERACTED {rating, ts, split, source}]->(:Item)
    (:User)-[:TAGGED {tag, ts}]->(:Item)
    (:Item)-[:HAS_GENRE]->(:Genre)      (:Item)-[:HAS_TAG {count}]->(:Tag)
    (:Item)-[:IN_CATEGORY]->(:Category) (:Item)-[:HAS_BRAND]->(:Brand)
    (:ActiveModel {dataset, version, ...})            the published model a dataset serves
    (:Item)-[:NEIGHBOUR {tag, w}]->(:Item)            written by a published live model
    (:CoLiked {dataset, tag, ...})  (:Item)-[:CO_LIKED {tag, ...}]->(:Item)   materialised co-likes
"""

from __future__ import annotations

from dataclasses import dataclass

# -- node labels ---------------------------------------------------------------------------------

DATASET = "Dataset"
USER = "User"
ITEM = "Item"
ACTIVE_MODEL = "ActiveModel"
CO_LIKED_MARKER = "CoLiked"


@dataclass(frozen=True)
class AttributeKind:
    """One kind of item attribute: a list column of the item frame, a node label, a relationship type.

    Attributes:
        column: The list-valued column of the item frame and the snapshot (``genres``).
        label: The label of the attribute nodes (``Genre``).
        rel: The relationship type from an item to its attribute nodes (``HAS_GENRE``).
        alias: The singular CSV header accepted for the column (``genre``).
    """

    column: str
    label: str
    rel: str
    alias: str


ATTRIBUTE_KINDS: tuple[AttributeKind, ...] = (
    AttributeKind("genres", "Genre", "HAS_GENRE", "genre"),
    AttributeKind("tags", "Tag", "HAS_TAG", "tag"),
    AttributeKind("categories", "Category", "IN_CATEGORY", "category"),
    AttributeKind("brands", "Brand", "HAS_BRAND", "brand"),
)
"""The item attribute kinds, in their canonical order."""

ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(k.column for k in ATTRIBUTE_KINDS)
"""List-valued item attribute columns (``genres``, ``tags``, ``categories``, ``brands``)."""

ATTRIBUTE_LABELS: dict[str, str] = {k.column: k.label for k in ATTRIBUTE_KINDS}
"""Item attribute column -> attribute node label."""

ATTRIBUTE_RELS: dict[str, str] = {k.column: k.rel for k in ATTRIBUTE_KINDS}
"""Item attribute column -> relationship type from the item to the attribute node."""

ATTRIBUTE_LABEL_BY_REL: dict[str, str] = {k.rel: k.label for k in ATTRIBUTE_KINDS}
"""Attribute relationship type -> attribute node label."""

ATTRIBUTE_ALIASES: dict[str, str] = {k.alias: k.column for k in ATTRIBUTE_KINDS}
"""Singular CSV header -> item attribute column (``genre`` -> ``genres``)."""

NODE_LABELS: tuple[str, ...] = (DATASET, USER, ITEM, *ATTRIBUTE_LABELS.values())
"""Every node label a load writes (the allow-list for label names pasted into Cypher)."""

DATA_LABELS: tuple[str, ...] = (USER, ITEM, *ATTRIBUTE_LABELS.values())
"""Labels of nodes that belong to a dataset generation."""

MODEL_LABELS: tuple[str, ...] = (ACTIVE_MODEL, CO_LIKED_MARKER)
"""Labels of the nodes publishing writes (the model pointer, the co-likes marker)."""

# -- relationship types --------------------------------------------------------------------------

INTERACTED = "INTERACTED"
TAGGED = "TAGGED"
REL_TYPES: tuple[str, ...] = (INTERACTED, TAGGED, *ATTRIBUTE_RELS.values())
"""Every relationship type graphrec writes at load time."""

NEIGHBOUR = "NEIGHBOUR"
CO_LIKED = "CO_LIKED"
MODEL_RELS: tuple[str, ...] = (NEIGHBOUR,)
"""Relationship types a published model writes between items of a generation, each carrying the
publication's ``tag`` (``(:Item)-[:NEIGHBOUR {tag, w}]->(:Item)``: the live model's item-item
weights, see :mod:`gnn.live`). A reload copies those of the active model between items kept in the
new generation."""

# -- display -------------------------------------------------------------------------------------

CAPTIONS: dict[str, str] = {
    DATASET: "name",
    USER: "id",
    ITEM: "title",
    **{label: "name" for label in ATTRIBUTE_LABELS.values()},
    ACTIVE_MODEL: "version",
    CO_LIKED_MARKER: "tag",
}
"""Label -> the scalar property that names a node of it (the Neo4j Browser caption)."""


def attribute_type_expression() -> str:
    """The attribute relationship types as a Cypher type expression, backtick-quoted.

    Returns:
        ``"`HAS_GENRE`|`HAS_TAG`|`IN_CATEGORY`|`HAS_BRAND`"``, for patterns such as
        ``(i)-[:<expression>]->(x)``.
    """
    return "|".join(f"`{k.rel}`" for k in ATTRIBUTE_KINDS)


def attribute_type_list() -> str:
    """The attribute relationship types as a Cypher list literal (``['HAS_GENRE', ...]``)."""
    return "[" + ", ".join(f"'{k.rel}'" for k in ATTRIBUTE_KINDS) + "]"


__all__ = [
    "ACTIVE_MODEL",
    "ATTRIBUTE_ALIASES",
    "ATTRIBUTE_COLUMNS",
    "ATTRIBUTE_KINDS",
    "ATTRIBUTE_LABELS",
    "ATTRIBUTE_LABEL_BY_REL",
    "ATTRIBUTE_RELS",
    "CAPTIONS",
    "CO_LIKED",
    "CO_LIKED_MARKER",
    "DATASET",
    "DATA_LABELS",
    "INTERACTED",
    "ITEM",
    "MODEL_LABELS",
    "MODEL_RELS",
    "NEIGHBOUR",
    "NODE_LABELS",
    "REL_TYPES",
    "TAGGED",
    "USER",
    "AttributeKind",
    "attribute_type_expression",
    "attribute_type_list",
]
