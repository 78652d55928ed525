"""The one object serving code holds: the driver, the database and the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import neo4j

from graph.connection import read


@dataclass(frozen=True)
class GraphStore:
    """Where a request reads from.

    Args:
        driver (neo4j.Driver): Open driver (owned by the caller).
        dataset (str): Dataset name.
        database (str, optional): Neo4j database. (default: ``"neo4j"``)
    """

    driver: neo4j.Driver
    dataset: str
    database: str = "neo4j"

    def read(self, query: str, params: dict[str, Any] | None = None) -> list[neo4j.Record]:
        """Run a read query (routed to readers in a cluster) with ``$dataset`` bound."""
        return read(self.driver, query, {"dataset": self.dataset, **(params or {})}, self.database)
