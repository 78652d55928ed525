"""Whether the active model can serve the active generation of a dataset (what ``/v1/health`` reports).

A dataset is served ``ok`` when a model is published for it, the model's vectors are on the active
generation (``ActiveModel.gen``, moved by a reload that carried them) and at least ``min_coverage`` of
the generation's items have a vector. Otherwise it is ``degraded`` with the reason.
"""

from __future__ import annotations

from typing import Literal

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read

DEFAULT_MIN_COVERAGE = 0.5
"""Smallest share of the active generation's items the active model must have vectors for."""

Q_SERVING_STATE = """
OPTIONAL MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
CALL (d, m) {
  OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen})
  // a live model may have no factors (EASE: neighbours only); every item it knows has its popularity value
  WITH i, CASE WHEN m.kind = 'live' THEN m.pop_prop ELSE m.item_prop END AS prop
  RETURN count(i) AS items, count(CASE WHEN prop IS NOT NULL AND i[prop] IS NOT NULL THEN i END) AS covered
}
RETURN d.gen AS gen, d.loading_gen AS loading_gen, m.version AS version, m.tag AS tag, m.published_at AS published_at,
       m.gen AS model_gen, items, covered
"""


class ServingHealth(BaseModel):
    """The serving state of one dataset."""

    status: Literal["ok", "degraded"]
    reason: str | None = Field(None, description="Why the state is degraded.")
    generation: int | None = Field(None, description="Active load generation (None: never loaded).")
    reloading: bool = Field(False, description="A load of the dataset is running.")
    model_version: str | None = None
    model_tag: str | None = None
    published_at: str | None = None
    model_generation: int | None = Field(None, description="Generation the model's vectors are on.")
    items: int = 0
    items_with_vector: int = 0
    coverage: float | None = Field(None, description="Share of the active generation's items the active model knows (a model vector; "
                                                      "for a live model, its stored values).")


def serving_health(driver: neo4j.Driver, dataset: str, database: str = "neo4j", min_coverage: float = DEFAULT_MIN_COVERAGE) -> ServingHealth:
    """Read the dataset's serving state (one query; raises a Neo4j error when the server is down)."""
    rows = read(driver, Q_SERVING_STATE, {"dataset": dataset}, database)
    r = rows[0] if rows else {}
    gen, items, covered = r.get("gen"), int(r.get("items") or 0), int(r.get("covered") or 0)
    coverage = covered / items if items else None
    h = ServingHealth(status="ok", generation=gen, reloading=r.get("loading_gen") is not None, model_version=r.get("version"),
                      model_tag=r.get("tag"), published_at=r.get("published_at"), model_generation=r.get("model_gen"),
                      items=items, items_with_vector=covered, coverage=coverage)
    reason = None
    if gen is None:
        reason = f"dataset {dataset!r} is not loaded"
    elif h.model_tag is None:
        reason = f"no model is published for dataset {dataset!r}"
    elif h.model_generation is not None and h.model_generation != gen:
        reason = (f"the active model was published for generation {h.model_generation}, the active generation is {gen}; "
                  f"{covered:,} of {items:,} items have a vector")
    elif coverage is not None and coverage < min_coverage:
        reason = f"the active model covers {coverage:.1%} of the active generation's {items:,} items (minimum {min_coverage:.0%})"
    if reason is not None:
        h.status, h.reason = "degraded", reason
    return h


__all__ = ["DEFAULT_MIN_COVERAGE", "ServingHealth", "serving_health"]
