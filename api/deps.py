"""Dependencies of the routes, as ``Annotated`` aliases so signatures read as types.

The per-app :class:`GraphState` (driver, dataset, cold-start model cache) lives on ``app.state.graph``
and is created in the lifespan (never at import time). The driver is (re)created lazily: when the
API started while Neo4j was unreachable, the first request after Neo4j comes back creates it.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.settings import Settings, get_settings
from graphrec.errors import GraphrecError, ModelNotReadyError, Neo4jUnavailableError

if TYPE_CHECKING:
    import neo4j

    from graph.connection import ConnectionInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Driver options for serving: fail fast (no transaction retries) so requests get 503 promptly.
SERVING_DRIVER_OPTIONS: dict[str, Any] = {
    "connection_acquisition_timeout": 5.0,
    "connection_timeout": 2.0,
    "max_transaction_retry_time": 0.0,
    "max_connection_pool_size": 64,
    "liveness_check_timeout": 5.0,
    "notifications_min_severity": "OFF",
}


class AdminAuthError(GraphrecError):
    """Missing admin credentials (401)."""

    http_status = 401


class AdminForbiddenError(GraphrecError):
    """Wrong admin credentials, or admin routes disabled (403)."""

    http_status = 403


class GraphState:
    """What every request needs: the driver, the database and dataset, the cold-start model.

    Args:
        settings (Settings): The app's settings.
        info (ConnectionInfo, optional): Where Neo4j is; resolved from the settings when ``None``.
    """

    def __init__(self, settings: Settings, info: ConnectionInfo | None = None) -> None:
        self.settings = settings
        self.dataset = settings.dataset
        self._info = info
        self._driver: neo4j.Driver | None = None
        self._lock = threading.Lock()
        self._coldstart: tuple[str, Any] | None = None
        self.jobs: Any = None
        self._limiter: Any = None

    async def run_query(self, fn: Callable[[], T]) -> T:
        """Run the blocking graph work ``fn`` in a worker thread, at most ``api_query_concurrency`` at once.

        The others wait in FIFO order (an :class:`anyio.CapacityLimiter`) instead of all running at
        once: with every core shared by Neo4j and the API, 8 requests in flight processor-share
        Neo4j and the GIL, so each takes as long as the slowest; queued first-come first-served, a
        request waits for the ones before it and then runs alone (same throughput, a shorter tail).
        """
        import anyio

        if self._limiter is None and self.settings.api_query_concurrency > 0:
            self._limiter = anyio.CapacityLimiter(self.settings.api_query_concurrency)
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    @property
    def info(self) -> ConnectionInfo:
        """Connection info (resolved lazily: the provisioned server may start after the API)."""
        if self._info is None:
            from api.cli.common import connection_info

            self._info = connection_info(self.settings)
        return self._info

    @property
    def database(self) -> str:
        """Neo4j database name."""
        return self.info.database

    @property
    def driver(self) -> neo4j.Driver:
        """The driver, created on first use."""
        if self._driver is None:
            with self._lock:
                if self._driver is None:
                    from graph.connection import open_driver

                    self._driver = open_driver(self.info, verify=False, **SERVING_DRIVER_OPTIONS)
        return self._driver

    def verify(self) -> None:
        """Check that Neo4j answers (raises :class:`Neo4jUnavailableError` / auth errors)."""
        from graph.connection import read

        read(self.driver, "RETURN 1 AS ok", {}, self.database)

    def coldstart(self, tag: str, checkpoint: str | None) -> Any:
        """The :class:`gnn.fusion.coldstart.ColdStart` of the publication ``tag`` (cached), or ``None``."""
        if not checkpoint:
            return None
        if self._coldstart is not None and self._coldstart[0] == tag:
            return self._coldstart[1]
        try:
            from gnn.fusion.coldstart import ColdStart

            cs = ColdStart.from_checkpoint(checkpoint, cache_dir=self.settings.home / "text-cache")
        except (ImportError, GraphrecError, OSError) as e:
            log.warning("no cold-start model for %s (%s)", checkpoint, e)
            cs = None
        self._coldstart = (tag, cs)
        return cs

    def close(self) -> None:
        """Close the driver."""
        if self._driver is not None:
            self._driver.close()
            self._driver = None


async def get_graph(request: Request) -> GraphState:
    """The app's :class:`GraphState` (``async``: FastAPI would run a plain function in the thread pool)."""
    state = getattr(request.app.state, "graph", None)
    if state is None:
        raise Neo4jUnavailableError("the API is starting; try again")
    return state


def get_driver(graph: Annotated[GraphState, Depends(get_graph)]) -> neo4j.Driver:
    """The Neo4j driver (503 when the server cannot even be located)."""
    return graph.driver


_bearer = HTTPBearer(auto_error=False, description="Admin token (GRAPHREC_ADMIN_TOKEN).")


def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin routes: 401 without a bearer token, 403 with a wrong one (or when no token is configured)."""
    if credentials is None or not credentials.credentials:
        raise AdminAuthError("admin token required (Authorization: Bearer <GRAPHREC_ADMIN_TOKEN>)")
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected:
        raise AdminForbiddenError("admin routes are disabled: set GRAPHREC_ADMIN_TOKEN")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise AdminForbiddenError("wrong admin token")


SettingsDep = Annotated[Settings, Depends(get_settings)]
GraphDep = Annotated[GraphState, Depends(get_graph)]
DriverDep = Annotated["neo4j.Driver", Depends(get_driver)]
AdminDep = Depends(require_admin)

__all__ = [
    "AdminAuthError", "AdminDep", "AdminForbiddenError", "DriverDep", "GraphDep", "GraphState", "ModelNotReadyError",
    "SettingsDep", "get_driver", "get_graph", "require_admin",
]
