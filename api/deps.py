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

from graphrec.errors import ConfigError, GraphrecError, ModelNotReadyError, Neo4jUnavailableError
from graphrec.settings import Settings, get_settings

if TYPE_CHECKING:
    from graph.connection import ConnectionInfo, Driver

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


def freeze_heap() -> None:
    """Move every object alive now (modules, the app, the driver, a loaded text model) out of the cyclic GC's reach.

    Python's full (generation 2) collections scan the whole heap: with FastAPI, pydantic, numpy, pandas
    and the driver loaded that stopped the API for ~40 ms every ~160 explained requests, and with
    ``transformers`` and the text encoder loaded for 250 ms (measured with ``gc.callbacks``): the p99
    of the API. These objects live as long as the process, so :func:`gc.freeze` (the approach the
    CPython docs recommend for pre-fork servers) loses nothing. Called at the end of start-up and again
    when the text model has loaded in the background.
    """
    import gc

    gc.collect()
    gc.freeze()


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
        self._driver: Driver | None = None
        self._lock = threading.Lock()
        self._coldstart: tuple[str, Any] | None = None
        self._coldstart_lock = threading.Lock()
        self._text_lock = threading.Lock()
        self._text_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: State of the text model: ``loading``, ``ready``, ``none`` (the active model has none) or ``failed``.
        self.text_model: str = "none"
        self.text_model_detail: str | None = None
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
            from graph.server.locate import connection_info

            self._info = connection_info(self.settings)
        return self._info

    @property
    def database(self) -> str:
        """Neo4j database name."""
        return self.info.database

    @property
    def driver(self) -> Driver:
        """The driver, created on first use."""
        if self._driver is None:
            with self._lock:
                if self._driver is None:
                    from graph.connection import open_driver

                    self._driver = open_driver(self.info, verify=False, **SERVING_DRIVER_OPTIONS)
        return self._driver

    def verify(self) -> None:
        """Check that Neo4j answers (raises :class:`Neo4jUnavailableError` / auth errors)."""
        from graph.connection import ping

        ping(self.driver, self.database)

    def coldstart(self, tag: str, checkpoint: str | None) -> Any:
        """The :class:`gnn.fusion.coldstart.ColdStart` of the publication ``tag`` (cached), or ``None``.

        Loads the checkpoint (not the text encoder, which loads lazily or in :meth:`preload_text_model`).
        """
        if not checkpoint:
            return None
        cached = self._coldstart
        if cached is not None and cached[0] == tag:
            return cached[1]
        with self._coldstart_lock:
            cached = self._coldstart
            if cached is not None and cached[0] == tag:
                return cached[1]
            try:
                from gnn.live_checkpoint import is_live_checkpoint

                if is_live_checkpoint(checkpoint):  # a live model: its text encoder only (no projection head)
                    from gnn.live_text import LiveText

                    cs = LiveText.from_checkpoint(checkpoint)
                else:
                    from gnn.fusion.coldstart import ColdStart

                    cs = ColdStart.from_checkpoint(checkpoint, cache_dir=self.settings.home / "text-cache")
            except (ImportError, GraphrecError, OSError) as e:
                log.warning("no cold-start model for %s (%s)", checkpoint, e)
                cs = None
            self._coldstart = (tag, cs)
            return cs

    def coldstart_for_text(self, tag: str, checkpoint: str | None) -> Any:
        """Like :meth:`coldstart`, for a request with free text: its text encoder must be loaded.

        Raises:
            TextModelLoadingError: The text model of ``tag`` is loading (in the background; started
                here when it was not): answer 503 with ``Retry-After``.
            NoTextModelError: The active model has no text model (409).
        """
        from api.errors import NoTextModelError, TextModelLoadingError

        no_text = NoTextModelError("the active model has no text model: free-text cold start is not available (give liked_item_ids)")
        if not checkpoint:
            raise no_text
        for attempt in range(2):
            cached = self._coldstart
            if cached is not None and cached[0] == tag:
                if cached[1] is None:
                    raise no_text
                if cached[1].encoder.loaded:
                    return cached[1]
            if attempt == 0:
                self.preload_text_model(tag, checkpoint)
        raise TextModelLoadingError("the text model is loading; retry in a few seconds")

    def preload_text_model(self, tag: str | None = None, checkpoint: str | None = None) -> None:
        """Load the active model's cold-start head and text encoder in a background thread.

        With no ``tag``, the active model is looked up first (retried while Neo4j is unreachable).
        The state is in :attr:`text_model` (``loading`` / ``ready`` / ``none`` / ``failed``).
        """
        with self._text_lock:
            if self._text_thread is not None and self._text_thread.is_alive():
                return
            self.text_model, self.text_model_detail = "loading", None
            self._text_thread = threading.Thread(target=self._load_text_model, args=(tag, checkpoint),
                                                 name="graphrec-text-model", daemon=True)
            self._text_thread.start()

    def _load_text_model(self, tag: str | None, checkpoint: str | None) -> None:
        import time

        try:
            if tag is None:
                from graph.embeddings import active_model

                delay = 0.5
                while True:
                    try:
                        info = active_model(self.driver, self.dataset, self.database)
                        break
                    except Neo4jUnavailableError:
                        if self._stopping.wait(delay):
                            return
                        delay = min(delay * 2, 5.0)
                if info is None:
                    self.text_model, self.text_model_detail = "none", "no model is published"
                    return
                tag, checkpoint = info.tag, info.checkpoint
            t0 = time.perf_counter()
            cs = self.coldstart(tag, checkpoint)
            if cs is None:
                self.text_model, self.text_model_detail = "none", "the active model has no text model"
                return
            cs.encoder.load()
            cs.encoder.encode(["warm-up"])  # the first forward pass allocates and (int8) packs weights
            freeze_heap()  # the encoder and transformers' modules live as long as the process
            self.text_model, self.text_model_detail = "ready", f"{cs.encoder.identity} ({tag}), loaded in {time.perf_counter() - t0:.1f} s"
            log.info("text model ready: %s", self.text_model_detail)
        except Exception as e:  # noqa: BLE001 - reported through /v1/health; requests with text get 503
            log.exception("the text model could not be loaded")
            self.text_model, self.text_model_detail = "failed", f"{type(e).__name__}: the text model could not be loaded (see the server log)"

    def warm_serving(self) -> None:
        """Read the active live model's tables and the catalogue now (start-up), not on the first request.

        Failures (Neo4j unreachable, no model) are logged: requests then read them on first use.
        """
        import time

        from graph.serving.planner import warm
        from graph.serving.store import GraphStore

        t0 = time.perf_counter()
        try:
            tag = warm(GraphStore(self.driver, self.dataset, self.database))
        except GraphrecError as e:
            log.warning("serving tables not read at start-up (%s); the first request reads them", e)
            return
        if tag is not None:
            log.info("serving tables of %s read in %.1f s", tag, time.perf_counter() - t0)

    def forget_user(self, user_id: str) -> None:
        """Drop what this process holds about ``user_id`` after an erasure.

        Per-user data is read from Neo4j on every request (vectors, serving lists, history); the only
        per-user data held here is the loaded checkpoint's fitted user vectors (cold start never looks a
        user up by id, but they stay in memory): the user's row is zeroed and its id forgotten.
        """
        cached = self._coldstart
        cs = cached[1] if cached is not None else None
        meta = getattr(cs, "meta", None)
        ids = getattr(meta, "user_ids", None)
        if cs is None or not ids or user_id not in ids:
            return
        row = ids.index(user_id)
        if row < len(cs.user_embeddings):
            cs.user_embeddings[row] = 0.0
        ids[row] = ""

    def close(self) -> None:
        """Close the driver (and stop waiting for the text model)."""
        self._stopping.set()
        if self._driver is not None:
            self._driver.close()
            self._driver = None


async def get_graph(request: Request) -> GraphState:
    """The app's :class:`GraphState` (``async``: FastAPI would run a plain function in the thread pool)."""
    state = getattr(request.app.state, "graph", None)
    if state is None:
        raise Neo4jUnavailableError("the API is starting; try again")
    return state


def get_driver(graph: Annotated[GraphState, Depends(get_graph)]) -> Driver:
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
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):  # constant time
        raise AdminForbiddenError("wrong admin token")


MIN_TOKEN_LENGTH = 32
MIN_TOKEN_DISTINCT = 12


def check_admin_token(settings: Settings) -> None:
    """Refuse to start in production (``GRAPHREC_ENVIRONMENT=production``) without a strong admin token.

    Strong means at least :data:`MIN_TOKEN_LENGTH` (32) characters with at least
    :data:`MIN_TOKEN_DISTINCT` (12) distinct ones, e.g. ``python -c "import secrets; print(secrets.token_urlsafe(32))"``
    (43 characters, 256 random bits). Other environments accept any token (or none: admin routes answer 403).

    Raises:
        ConfigError: In production, with a missing or weak token.
    """
    if settings.environment != "production":
        return
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if len(token) < MIN_TOKEN_LENGTH or len(set(token)) < MIN_TOKEN_DISTINCT:
        raise ConfigError(f"GRAPHREC_ADMIN_TOKEN must be set in production, with at least {MIN_TOKEN_LENGTH} characters of which "
                          f"{MIN_TOKEN_DISTINCT} distinct (for example the output of "
                          "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`)")


SettingsDep = Annotated[Settings, Depends(get_settings)]
GraphDep = Annotated[GraphState, Depends(get_graph)]
DriverDep = Annotated["Driver", Depends(get_driver)]
AdminDep = Depends(require_admin)

__all__ = [
    "AdminAuthError", "AdminDep", "AdminForbiddenError", "DriverDep", "GraphDep", "GraphState", "ModelNotReadyError",
    "SettingsDep", "check_admin_token", "get_driver", "get_graph", "require_admin",
]
