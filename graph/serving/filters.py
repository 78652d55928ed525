"""Business filters as Cypher predicates, composed into the serving queries.

A predicate is built for a variable name (checked) and reads only ``$parameters``:
``$genres``, ``$year_min``, ``$year_max``, ``$include_ids``, ``$exclude_ids``, ``$exclude_seen``;
``d`` must be bound to the ``(:Dataset)`` node and ``u`` to the user node or ``null``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graph.recommend import Filters

_VAR = re.compile(r"^[a-z][a-z0-9_]{0,20}$")


def item_predicate(var: str = "i", check_seen: bool = True) -> str:
    """``var`` is an item of the active generation that passes the filters and (``check_seen``) was not
    seen by ``u``; the one definition of the business filters, used by every serving query."""
    if not _VAR.match(var):
        raise ValueError(f"bad Cypher variable name {var!r}")
    seen = f"($exclude_seen = false OR u IS NULL OR NOT EXISTS {{ (u)-[:INTERACTED]->({var}) }})" if check_seen else "true"
    return (
        f"{var}.dataset = $dataset AND {var}.gen = d.gen"
        f" AND {seen}"
        f" AND ($genres IS NULL OR EXISTS {{ ({var})-[:HAS_GENRE]->(g:Genre) WHERE g.name IN $genres }})"
        f" AND ($year_min IS NULL OR {var}.year >= $year_min)"
        f" AND ($year_max IS NULL OR {var}.year <= $year_max)"
        f" AND ($include_ids IS NULL OR {var}.id IN $include_ids)"
        f" AND NOT {var}.id IN $exclude_ids"
    )


def filter_params(f: Filters) -> dict[str, Any]:
    """The parameters :func:`item_predicate` reads."""
    return {"exclude_seen": f.exclude_seen, "genres": f.genres, "year_min": f.year_min, "year_max": f.year_max,
            "include_ids": f.include_ids, "exclude_ids": list(f.exclude_ids)}
