"""The FastAPI application: :func:`create_app` builds it and mounts the one versioned router ``/v1``.

Nothing is created at import time. The lifespan creates the per-app :class:`api.deps.GraphState`
and waits for Neo4j with tenacity retries; if Neo4j is still unreachable the API starts anyway,
answers 503 with ``Retry-After`` and recovers by itself when Neo4j comes back (the driver
reconnects on the next request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import GraphState, check_admin_token, freeze_heap
from api.errors import (
    HTTP_CODES,
    VALIDATION_ERROR,
    BodyTooLargeError,
    RequestContext,
    describe,
    error_body,
    exception_response,
    request_id_of,
    validation_errors,
)
from api.routes import admin, health, interactions, items, recommendations, users
from api.schemas import COMMON_ERRORS
from graphrec.errors import GraphrecError, Neo4jUnavailableError
from graphrec.settings import Settings, get_settings

if TYPE_CHECKING:
    from graph.connection import ConnectionInfo

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
STARTUP_WAIT_S = 30.0


def api_router() -> APIRouter:
    """The versioned router with every resource."""
    router = APIRouter(prefix=API_PREFIX, responses=COMMON_ERRORS)
    for module in (users, items, recommendations, interactions, admin, health):
        router.include_router(module.router)
    return router


class BodySizeLimit:
    """ASGI middleware: request bodies larger than ``max_bytes`` get 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    await self._reject(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:  # after a 413 the app's own answer is dropped
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = exception_response(BodyTooLargeError(f"request body larger than {self.max_bytes} bytes"), scope)
        await response(scope, receive, send)


class ObserveMetrics:
    """ASGI middleware: request count and latency per route and status into :class:`Metrics`.

    Plain ASGI rather than ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``), which
    cost ~1 ms of CPU per request (measured with ``graphrec serve``, explained recommendations).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as e:
            status = describe(e)[0]  # what RequestContext will answer
            raise
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            if scope["path"].startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX + "/"):
                path = API_PREFIX + path  # routes of included routers report their path without the prefix
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - t0)


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("graphrec_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("graphrec_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.neo4j_up = Gauge("graphrec_neo4j_up", "1 when the last Neo4j call succeeded", registry=self.registry)
        self.neo4j_up.set(1)


def create_app(settings: Settings | None = None, connection_info: ConnectionInfo | None = None, startup_wait_s: float = STARTUP_WAIT_S) -> FastAPI:
    """Build the application.

    Args:
        settings (Settings, optional): Settings (default: :func:`get_settings` at start-up).
        connection_info (ConnectionInfo, optional): Neo4j to use (default: from the settings, resolved lazily).
        startup_wait_s (float, optional): How long the start-up waits for Neo4j before serving 503s.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        check_admin_token(s)  # production refuses a missing or weak admin token
        state = GraphState(s, connection_info)
        await run_in_threadpool(_wait_for_neo4j, state, startup_wait_s)
        if startup_wait_s > 0:
            await run_in_threadpool(state.warm_serving)  # the live model's tables: read now, not by the first request
        app.state.graph = state
        if s.preload_text_model:
            state.preload_text_model()  # background thread: text requests answer 503 until it is ready
        app.state.jobs = _job_runner(state)
        await run_in_threadpool(app.state.jobs.recover)  # jobs a dead API process left running: interrupted
        freeze_heap()
        try:
            yield
        finally:
            app.state.jobs.shutdown()
            state.close()
            import gc

            gc.unfreeze()  # the process may go on (tests, an embedding app): its objects become collectable again

    app = FastAPI(
        title="graphrec",
        version="0.1.0",
        summary="Explainable recommendations from Neo4j + LightGCN + BERT.",
        description="Recommendations come from a vector index over model embeddings stored in Neo4j, filtered in Cypher; "
                    "every explanation is a real path in the graph. Admin routes need `Authorization: Bearer <GRAPHREC_ADMIN_TOKEN>`.",
        lifespan=lifespan,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    metrics = Metrics()
    app.state.metrics = metrics
    app.include_router(api_router())

    @app.get("/metrics", response_class=Response, tags=["health"], summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {}}}})
    def get_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(ObserveMetrics, metrics=metrics)

    @app.exception_handler(GraphrecError)
    async def graphrec_error(request: Request, e: GraphrecError) -> JSONResponse:
        if isinstance(e, Neo4jUnavailableError) or e.http_status == 503:
            metrics.neo4j_up.set(0 if isinstance(e, Neo4jUnavailableError) else 1)
        return exception_response(e, request.scope)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = validation_errors(e.errors())
        return error_body(422, VALIDATION_ERROR, "invalid request: " + "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in errors[:5]), request_id_of(request.scope), errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code, "error" if e.status_code < 500 else "internal_error")
        message = str(e.detail) if e.status_code < 500 else "internal error"
        response = error_body(e.status_code, code, message, request_id_of(request.scope))
        for name, value in (e.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    max_bytes = (settings.max_body_bytes if settings else None)
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes or get_settings().max_body_bytes)
    app.add_middleware(RequestContext)  # outermost: every answer, 413 and 500 included, carries the request id
    return app


def _job_runner(state: GraphState) -> Any:
    """The admin job runner, with its jobs kept in Neo4j (``(:Job)`` nodes)."""
    from api.jobs import JobRunner
    from graph.jobs_store import JobStore

    try:
        database = state.database
    except GraphrecError:
        database = state.settings.neo4j_database
    return JobRunner(store=JobStore(lambda: state.driver, database, dataset=state.dataset))


def _wait_for_neo4j(state: GraphState, wait_s: float) -> None:
    """Wait (tenacity, exponential back-off) until Neo4j answers; give up quietly after ``wait_s``."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

    if wait_s <= 0:
        return
    try:
        for attempt in Retrying(stop=stop_after_delay(wait_s), wait=wait_exponential(multiplier=0.2, max=3.0),
                                retry=retry_if_exception_type(Neo4jUnavailableError), reraise=True):
            with attempt:
                state.verify()
    except GraphrecError as e:
        log.warning("Neo4j is not reachable yet (%s); serving 503 until it is", e)


def app_factory() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app_factory``."""
    return create_app()
