"""How an item's text is assembled from the snapshot's item columns.

The default recipe gives, for a MovieLens movie::

    Toy Story (1995). Genres: Adventure, Animation, Children. Tags: pixar, fun.

The recipe is a pydantic model, so it is saved with every checkpoint and cache key and reloads
unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from graphrec.errors import InvalidArgumentError
from graphrec.vocabulary import ATTRIBUTE_COLUMNS

TextField = Literal["title", "text", "genres", "tags", "categories", "brands"]
"""``title``, ``text`` and the attribute columns of :data:`graphrec.vocabulary.ATTRIBUTE_COLUMNS`, spelled out
for the type checker (a unit test keeps the two equal)."""
_LIST_FIELDS = ATTRIBUTE_COLUMNS


class TextRecipe(BaseModel):
    """Which item columns make up the item text, in which order and with which separators."""

    fields: list[TextField] = Field(
        default_factory=lambda: ["title", "text", *ATTRIBUTE_COLUMNS],
        description="Item columns used, in this order. Empty or missing columns are skipped.",
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {"genres": "Genres", "tags": "Tags", "categories": "Categories", "brands": "Brand"},
        description="Prefix written before a list field ('Genres: a, b'); a field without a label gets none.",
    )
    field_separator: str = Field(". ", description="Put between fields.")
    list_separator: str = Field(", ", description="Put between the values of a list field.")
    max_tags: int = Field(10, ge=0, description="At most this many values of a list field are kept (in stored order).")
    max_chars: int = Field(1000, gt=0, description="The assembled text is cut to this many characters.")
    lowercase: bool = Field(False, description="Lower-case the text (uncased BERT models do this themselves).")
    skip_derived_text: bool = Field(
        True,
        description="When the item's `text` starts with its title it is a summary a loader derived from the other "
        "columns (MovieLens: title, genres, tags), not a description: it is then skipped so nothing is repeated.",
    )


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return []


def build_text(item: Mapping[str, Any], recipe: TextRecipe | None = None) -> str:
    """Build one item's text from a mapping of its columns.

    Args:
        item: Column name to value (``title``, ``text`` strings; ``genres``... lists of str).
        recipe: The recipe (default: :class:`TextRecipe()`).

    Returns:
        The text ('' when every field is empty).
    """
    recipe = recipe or TextRecipe()
    parts: list[str] = []
    for field in recipe.fields:
        value = item.get(field)
        if field in _LIST_FIELDS:
            values = _as_list(value)[: recipe.max_tags]
            if not values:
                continue
            body = recipe.list_separator.join(values)
            label = recipe.labels.get(field)
            parts.append(f"{label}: {body}" if label else body)
        else:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            s = str(value).strip()
            if field == "text" and recipe.skip_derived_text and "title" in recipe.fields:
                title = str(item.get("title") or "").strip()
                if title and s.startswith(title):
                    continue
            if s:
                parts.append(s.rstrip(". ") if recipe.field_separator.strip() == "." else s)
    text = recipe.field_separator.join(parts)
    if parts and recipe.field_separator.strip() == ".":
        text += "."
    if recipe.lowercase:
        text = text.lower()
    return text[: recipe.max_chars]


def build_item_texts(items: pd.DataFrame | Iterable[Mapping[str, Any]], recipe: TextRecipe | None = None) -> list[str]:
    """Build the text of every item, in row order.

    Args:
        items: The snapshot's ``items`` frame (or any iterable of column mappings).
        recipe: The recipe (default: :class:`TextRecipe()`).

    Raises:
        InvalidArgumentError: If the frame has none of the recipe's columns.
    """
    recipe = recipe or TextRecipe()
    if isinstance(items, pd.DataFrame):
        present = [f for f in recipe.fields if f in items.columns]
        if not present and len(items):
            raise InvalidArgumentError(f"items have none of the recipe fields {recipe.fields}")
        columns: Sequence[str] = present
        rows = items[list(columns)].to_dict("records") if columns else [{} for _ in range(len(items))]
    else:
        rows = list(items)
    return [build_text(r, recipe) for r in rows]
