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
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from benchmarks.fuzz_api import fuzz_app

DS = "toy-fuzz"
TOKEN = "integration-fuzz-token-0123456789-abcdefgh"
EXAMPLES = 12


@pytest.fixture(scope="module")
def app(neo4j_driver: Any, neo4j_info: Any) -> Iterator[Any]:
    application = fuzz_app(neo4j_driver, neo4j_info, DS, TOKEN)
    with TestClient(application):  # runs the lifespan (driver, job store); the schema's calls go through the ASGI app
        application.state.jobs.python = shutil.which("true") or "true"
        yield application


@pytest.fixture(scope="module")
def api_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_contract(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
