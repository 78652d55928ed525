"""Tail control of the API: FIFO admission of the graph work (api_query_concurrency) and the frozen start-up heap."""

from __future__ import annotations

import gc
import threading
import time

import anyio
import pytest
from fastapi.testclient import TestClient

from api.deps import GraphState
from api.main import create_app
from graph.connection import ConnectionInfo
from graphrec.settings import Settings


def _run_many(limit: int, n: int, hold_s: float = 0.05) -> tuple[int, list[int]]:
    """Start ``n`` run_query calls one after the other; return the peak concurrency and the order they ran in."""
    state = GraphState(Settings(api_query_concurrency=limit, dataset="toy"), ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"))
    lock = threading.Lock()
    running = [0]
    peak = [0]
    order: list[int] = []

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            order.append(i)
        time.sleep(hold_s)
        with lock:
            running[0] -= 1
        return i * i

    results: dict[int, int] = {}

    async def main() -> None:
        async def one(i: int) -> None:
            results[i] = await state.run_query(lambda: work(i))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
                await anyio.sleep(0.002)  # arrival order 0, 1, 2, ...

    anyio.run(main)
    assert results == {i: i * i for i in range(n)}
    return peak[0], order


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_run_query_admits_at_most_the_limit_in_arrival_order(limit: int) -> None:
    peak, order = _run_many(limit, 8)
    assert peak == limit
    # first come, first served: requests are admitted in arrival order. The ones admitted together start
    # their worker threads in whatever order the OS runs them, so a request may start at most limit - 1
    # places away from its arrival (with limit 1 the order is exact)
    assert sorted(order) == list(range(8))
    assert all(abs(order.index(i) - i) < limit for i in range(8)), order


def test_run_query_without_limit_runs_everything_at_once() -> None:
    peak, _ = _run_many(0, 6, hold_s=0.2)
    assert peak == 6


def test_run_query_passes_exceptions_through() -> None:
    state = GraphState(Settings(api_query_concurrency=2, dataset="toy"), ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"))

    def boom() -> None:
        raise ValueError("boom")

    async def main() -> None:
        with pytest.raises(ValueError, match="boom"):
            await state.run_query(boom)
        assert await state.run_query(lambda: 7) == 7  # the slot was given back

    anyio.run(main)


def test_startup_heap_is_frozen() -> None:
    gc.unfreeze()
    app = create_app(Settings(dataset="toy"), ConnectionInfo("bolt://127.0.0.1:1", "neo4j", "x"), startup_wait_s=0)
    try:
        with TestClient(app):
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0  # shutdown gives the objects back to the collector
    finally:
        gc.unfreeze()


def test_query_concurrency_setting_is_validated() -> None:
    assert Settings().api_query_concurrency == 3
    with pytest.raises(ValueError):
        Settings(api_query_concurrency=-1)
