"""Deleting a generation falls back to smaller batches when the server's transaction memory runs out."""

from __future__ import annotations

from typing import Any

import pytest

import graph.datasets as datasets
from graphrec.errors import QueryError


def test_smaller_batches_after_a_memory_pool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []

    def run(driver: Any, query: str, params: dict[str, Any], database: str) -> str:
        sizes.append(int(params["limit"]))
        if params["limit"] > 700:
            raise QueryError("Neo4j query failed: Neo.TransientError.General.MemoryPoolOutOfMemoryError: limit exceeded")
        return "done"

    monkeypatch.setattr(datasets, "_run_autocommit", run)
    assert datasets._delete_in_batches(object(), "q", "ds", 3, 10_000, "neo4j") == "done"  # type: ignore[arg-type]
    assert sizes == [10_000, 2_500, 625]


def test_other_errors_and_the_smallest_batch_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def other(driver: Any, query: str, params: dict[str, Any], database: str) -> None:
        raise QueryError("Neo4j query failed: Neo.ClientError.Statement.SyntaxError: nope")

    monkeypatch.setattr(datasets, "_run_autocommit", other)
    with pytest.raises(QueryError, match="SyntaxError"):
        datasets._delete_in_batches(object(), "q", "ds", 3, 10_000, "neo4j")  # type: ignore[arg-type]

    def always(driver: Any, query: str, params: dict[str, Any], database: str) -> None:
        raise QueryError("Neo4j query failed: Neo.TransientError.General.MemoryPoolOutOfMemoryError")

    monkeypatch.setattr(datasets, "_run_autocommit", always)
    with pytest.raises(QueryError, match="MemoryPool"):
        datasets._delete_in_batches(object(), "q", "ds", 3, 1_000, "neo4j")  # type: ignore[arg-type]
