"""The text recipe builds item text from snapshot columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gnn.text.recipe import TextRecipe, build_item_texts, build_text


def test_default_recipe_orders_fields_and_labels_lists() -> None:
    item = {"title": "Toy Story (1995)", "text": "", "genres": ["Animation", "Comedy"], "tags": np.array(["pixar", "fun"])}
    assert build_text(item) == "Toy Story (1995). Genres: Animation, Comedy. Tags: pixar, fun."


def test_custom_recipe_fields_separators_and_max_tags() -> None:
    recipe = TextRecipe(fields=["tags", "title"], field_separator=" | ", list_separator="/", max_tags=2, labels={})
    item = {"title": "Alien", "tags": ["space", "horror", "ridley scott"], "genres": ["Sci-Fi"]}
    assert build_text(item, recipe) == "space/horror | Alien"


def test_empty_and_missing_fields_are_skipped() -> None:
    assert build_text({"title": "", "genres": [], "brands": None}) == ""
    assert build_text({"title": "Only"}) == "Only."


def test_description_text_and_lowercase_and_max_chars() -> None:
    recipe = TextRecipe(lowercase=True, max_chars=20)
    out = build_text({"title": "Heat", "text": "A Crime Story About Thieves", "genres": ["Crime"]}, recipe)
    assert out == "heat. a crime story "
    assert len(out) == 20


def test_build_item_texts_from_frame_in_row_order() -> None:
    items = pd.DataFrame({"id": ["1", "2"], "title": ["A", "B"], "genres": [["x"], []]})
    assert build_item_texts(items) == ["A. Genres: x.", "B."]


def test_recipe_round_trips_through_json() -> None:
    r = TextRecipe(fields=["title", "brands"], max_tags=3)
    assert TextRecipe.model_validate_json(r.model_dump_json()) == r


@pytest.mark.parametrize("bad", [{"fields": ["nope"]}, {"max_tags": -1}])
def test_invalid_recipe_is_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        TextRecipe(**bad)


def test_loader_derived_text_is_not_repeated() -> None:
    item = {"title": "Heat (1995)", "text": "Heat (1995). Genres: Crime.", "genres": ["Crime"]}
    assert build_text(item) == "Heat (1995). Genres: Crime."
    assert build_text(item, TextRecipe(skip_derived_text=False)).count("Heat (1995)") == 2
