"""The API's contract, fuzzed: schemathesis generates requests for every operation of the OpenAPI document
(admin routes with a valid token) and runs all its checks against the ASGI app on a test graph in the real Neo4j.

A short run (a few examples per operation) that fails ``make test`` on any contract failure; the long run
(3,000+ cases) is ``benchmarks/fuzz_api.py``. Admin jobs are accepted and stored but their commands run
``true`` instead of ``graphrec``, so fuzzed reloads and retrainings do not touch the graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from benchmarks.fuzz_api import fuzz_app, fuzz_operations

DS = "toy-fuzz"
TOKEN = "integration-fuzz-token-0123456789-abcdefgh"
EXAMPLES = 8


@pytest.fixture(scope="module")
def app(neo4j_driver: Any, neo4j_info: Any) -> Iterator[Any]:
    application = fuzz_app(neo4j_driver, neo4j_info, DS, TOKEN)
    with TestClient(application):  # runs the lifespan (driver, job store); the schema's calls go through the ASGI app
        application.state.jobs.python = shutil.which("true") or "true"
        yield application


def test_api_contract(app: Any) -> None:
    """Every operation, positive and negative data, all of schemathesis' checks; no failure."""
    cases, failures = fuzz_operations(app, TOKEN, EXAMPLES)
    assert cases >= 100
    assert not failures, "\n\n".join(failures[:10])
