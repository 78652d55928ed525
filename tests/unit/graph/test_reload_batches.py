"""The reload's copy of model relationships: batches by relationship count, halved when the server's
transaction memory runs out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import graph.reload as reload
from graphrec.errors import QueryError


def test_batches_add_up_to_the_limit_and_a_heavy_id_stands_alone() -> None:
    ids = ["a", "b", "c", "d", "e"]
    assert reload.batches_by_weight(ids, [3, 3, 5, 12, 1], 6) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert reload.batches_by_weight(ids, [1] * 5, 100) == [ids]
    assert reload.batches_by_weight([], [], 10) == []


def _fake(monkeypatch: pytest.MonkeyPatch, degrees: dict[str, int], fail_above: int | None, error: str) -> list[list[str]]:
    sent: list[list[str]] = []

    def read(driver: Any, query: str, params: dict[str, Any], database: str) -> list[dict[str, Any]]:
        return [{"id": i, "n": n} for i, n in degrees.items()]

    def write(driver: Any, query: str, params: dict[str, Any], database: str) -> Any:
        ids = list(params["ids"])
        sent.append(ids)
        if fail_above is not None and sum(degrees[i] for i in ids) > fail_above:
            raise QueryError(f"Neo4j query failed: {error}")
        return SimpleNamespace(counters=SimpleNamespace(relationships_created=sum(degrees[i] for i in ids)))

    monkeypatch.setattr(reload, "read", read)
    monkeypatch.setattr(reload, "write", write)
    return sent


def test_copy_splits_a_batch_the_server_cannot_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    degrees = {f"i{k}": 10 for k in range(8)}
    sent = _fake(monkeypatch, degrees, fail_above=20, error="Neo.TransientError.General.MemoryPoolOutOfMemoryError: limit")
    monkeypatch.setattr(reload, "REL_BATCH", 80)
    kept = set(degrees) - {"i7"}  # i7 was removed by the reload: not copied
    assert reload._copy_rels(object(), "NEIGHBOUR", {"tag": "t"}, kept, "neo4j") == 70  # type: ignore[arg-type]
    assert sent[0] == [f"i{k}" for k in range(7)]  # one batch first, then halves until each fits
    done = [ids for ids in sent if sum(degrees[i] for i in ids) <= 20]
    assert sorted(i for ids in done for i in ids) == sorted(kept)
    assert [i for ids in done for i in ids] == [f"i{k}" for k in range(7)]  # in order


def test_copy_raises_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, {"a": 5, "b": 5}, fail_above=0, error="Neo.ClientError.Statement.SyntaxError: nope")
    with pytest.raises(QueryError, match="SyntaxError"):
        reload._copy_rels(object(), "NEIGHBOUR", {"tag": "t"}, {"a", "b"}, "neo4j")  # type: ignore[arg-type]
