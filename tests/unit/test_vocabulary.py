"""graphrec.vocabulary is the one definition of labels, relationship types and attribute kinds."""

from __future__ import annotations

from typing import get_args

from gnn.text.recipe import TextField, TextRecipe
from graph import schema
from graphrec import vocabulary as v
from graphrec.frames import ITEM_COLUMNS
from graphrec.snapshot import ITEM_COLUMNS as SNAPSHOT_ITEM_COLUMNS


def test_attribute_kinds_are_consistent() -> None:
    assert v.ATTRIBUTE_COLUMNS == ("genres", "tags", "categories", "brands")
    assert v.ATTRIBUTE_LABELS == {"genres": "Genre", "tags": "Tag", "categories": "Category", "brands": "Brand"}
    assert v.ATTRIBUTE_RELS == {"genres": "HAS_GENRE", "tags": "HAS_TAG", "categories": "IN_CATEGORY", "brands": "HAS_BRAND"}
    assert v.ATTRIBUTE_LABEL_BY_REL == {v.ATTRIBUTE_RELS[c]: v.ATTRIBUTE_LABELS[c] for c in v.ATTRIBUTE_COLUMNS}
    assert v.ATTRIBUTE_ALIASES == {"genre": "genres", "tag": "tags", "category": "categories", "brand": "brands"}


def test_cypher_type_expressions() -> None:
    assert v.attribute_type_expression() == "`HAS_GENRE`|`HAS_TAG`|`IN_CATEGORY`|`HAS_BRAND`"
    assert v.attribute_type_list() == "['HAS_GENRE', 'HAS_TAG', 'IN_CATEGORY', 'HAS_BRAND']"


def test_every_user_of_the_vocabulary_takes_it_from_graphrec() -> None:
    assert schema.ATTRIBUTE_LABELS is v.ATTRIBUTE_LABELS and schema.ATTRIBUTE_RELS is v.ATTRIBUTE_RELS
    assert schema.NODE_LABELS is v.NODE_LABELS and schema.REL_TYPES is v.REL_TYPES and schema.MODEL_RELS is v.MODEL_RELS
    assert ITEM_COLUMNS[4:] == v.ATTRIBUTE_COLUMNS and SNAPSHOT_ITEM_COLUMNS[4:] == v.ATTRIBUTE_COLUMNS
    assert get_args(TextField) == ("title", "text", *v.ATTRIBUTE_COLUMNS)
    assert TextRecipe().fields == ["title", "text", *v.ATTRIBUTE_COLUMNS]


def test_every_label_has_a_caption() -> None:
    assert set(v.CAPTIONS) == {*v.NODE_LABELS, *v.MODEL_LABELS}
