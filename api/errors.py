"""Error responses of the API: the ONE place where an exception becomes an HTTP status and a body.

Every error answer has the body :class:`api.schemas.ErrorOut`: a stable ``code``, a ``message`` meant
for people, the ``request_id`` (also in the ``X-Request-ID`` header) and, for validation errors, the
list of ``errors``. The HTTP status of a domain error is its class's ``http_status``
(:mod:`graphrec.errors`); :func:`describe` is the only function that reads it.

5xx answers never carry the exception's text (driver messages name database addresses, lock
internals, queries): their message is a fixed sentence per code, and the server logs the request id
with the whole exception chain.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphrec.errors import (
    ConfigError,
    DataError,
    GraphrecError,
    InvalidArgumentError,
    LoadError,
    ModelError,
    ModelNotReadyError,
    Neo4jAuthError,
    Neo4jError,
    Neo4jUnavailableError,
    NotFoundError,
    QueryError,
    UnknownItemError,
    UnknownUserError,
    WriteConflictError,
)

log = logging.getLogger("api.errors")

RETRY_AFTER_S = 5
"""``Retry-After`` of every 503."""

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class TextModelLoadingError(ModelNotReadyError):
    """The text model is still loading (503 with ``Retry-After``)."""


class NoTextModelError(GraphrecError):
    """A request with free text while the active model has no text model (409: publish one with a text model)."""

    http_status = 409


class BodyTooLargeError(GraphrecError):
    """The request body is larger than ``GRAPHREC_MAX_BODY_BYTES`` (413)."""

    http_status = 413


class InvalidBodyError(GraphrecError):
    """The request body could not be parsed at all (400)."""

    http_status = 400


# Most specific first: the first class an exception is an instance of gives its code.
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (TextModelLoadingError, "text_model_loading"),
    (NoTextModelError, "no_text_model"),
    (UnknownUserError, "unknown_user"),
    (UnknownItemError, "unknown_item"),
    (NotFoundError, "not_found"),
    (InvalidArgumentError, "invalid_argument"),
    (DataError, "invalid_data"),
    (BodyTooLargeError, "body_too_large"),
    (InvalidBodyError, "invalid_body"),
    (Neo4jUnavailableError, "neo4j_unavailable"),
    (Neo4jAuthError, "neo4j_unavailable"),
    (WriteConflictError, "write_conflict"),
    (QueryError, "database_error"),
    (Neo4jError, "database_error"),
    (ModelNotReadyError, "model_not_ready"),
    (ModelError, "model_error"),
    (LoadError, "load_failed"),
    (ConfigError, "server_misconfigured"),
)

# Fixed messages of the codes whose exception text must not reach clients.
_PUBLIC_MESSAGES: dict[str, str] = {
    "neo4j_unavailable": "the database is not reachable right now; retry later",
    "database_error": "the database could not answer this request",
    "database_busy": "the database is busy (a conflicting write); retry",
    "write_conflict": "the write conflicted with concurrent writes and was not applied; send it again",
    "model_error": "the model could not answer this request",
    "load_failed": "the batch load failed",
    "server_misconfigured": "the server is misconfigured",
    "internal_error": "internal error",
}

# Exception classes whose text is written for clients even on a 503 (domain sentences, no internals).
_PUBLIC_5XX: tuple[type[BaseException], ...] = (ModelNotReadyError,)

#: Stable codes of the answers the API produces without an exception class (FastAPI/Starlette).
VALIDATION_ERROR = "validation_error"
HTTP_CODES: dict[int, str] = {400: "invalid_body", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                              405: "method_not_allowed", 409: "conflict", 406: "not_acceptable", 413: "body_too_large",
                              415: "unsupported_media_type", 422: VALIDATION_ERROR, 429: "too_many_requests"}


def describe(exc: BaseException) -> tuple[int, str, str]:
    """``(status, code, message)`` of an exception: the mapping of errors to HTTP answers.

    Driver exceptions are first translated to domain errors (:func:`graph.connection.translate_error`).
    Anything that is not a :class:`GraphrecError` is a 500 ``internal_error``.
    """
    if not isinstance(exc, GraphrecError):
        from graph.connection import translate_error

        mapped = translate_error(exc)
        if isinstance(mapped, GraphrecError):
            exc = mapped
    if not isinstance(exc, GraphrecError):
        return 500, "internal_error", _PUBLIC_MESSAGES["internal_error"]
    if isinstance(exc, QueryError) and _retryable(exc):  # deadlock, lock timeout, leader switch: the client may retry
        return 503, "database_busy", _PUBLIC_MESSAGES["database_busy"]
    status = int(exc.http_status)
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), None)
    if code is None:
        code = getattr(exc, "code", None) or HTTP_CODES.get(status) or ("internal_error" if status >= 500 else "error")
    if status < 500 or isinstance(exc, _PUBLIC_5XX):
        message = str(exc)
    else:
        message = _PUBLIC_MESSAGES.get(code, _PUBLIC_MESSAGES["internal_error"])
    return status, code, message


def _retryable(exc: BaseException) -> bool:
    """Whether the driver error under ``exc`` says the same request may succeed when retried."""
    cause = exc.__cause__
    check = getattr(cause, "is_retryable", None)
    try:
        return bool(check()) if callable(check) else False
    except Exception:  # noqa: BLE001 - a driver without the method: not retryable
        return False


def request_id_of(scope: Scope) -> str:
    """The request id the :class:`RequestContext` middleware gave this request (a new one when none)."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = uuid.uuid4().hex
    return str(rid)


def error_body(status: int, code: str, message: str, request_id: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The JSON answer of an error (with ``X-Request-ID``, and ``Retry-After`` on 503)."""
    body: dict[str, Any] = {"code": code, "message": message, "detail": message, "request_id": request_id}
    if errors:
        body["errors"] = errors
    headers = {REQUEST_ID_HEADER: request_id}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(body, status_code=status, headers=headers)


def exception_response(exc: BaseException, scope: Scope) -> JSONResponse:
    """The answer to ``exc``; every 5xx is logged with the request id and the exception chain."""
    status, code, message = describe(exc)
    rid = request_id_of(scope)
    if status >= 500:
        log.error("request %s %s %s -> %d %s: %s", rid, scope.get("method"), scope.get("path"), status, code,
                  f"{type(exc).__name__}: {exc}", exc_info=exc)
    errors = validation_errors(exc.errors) if isinstance(exc, InvalidArgumentError) else None
    return error_body(status, code, message, rid, errors)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as ``{type, loc, msg}`` (no echoed input, no exception objects)."""
    out: list[dict[str, Any]] = []
    for e in errors or []:
        if isinstance(e, dict):
            out.append({"type": str(e.get("type", "value_error")), "loc": jsonable_encoder(list(e.get("loc", ()))),
                        "msg": str(e.get("msg", ""))})
    return out


class RequestContext:
    """Outermost ASGI middleware: a request id for every request, echoed in ``X-Request-ID``.

    A client's own ``X-Request-ID`` (letters, digits, ``._:-``, at most 64) is kept; otherwise a new
    one is made. An exception nothing else answered becomes the 500 body here (logged once, with
    the request id), so no stack trace or driver text ever reaches a client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _CLIENT_ID_RE.match(candidate) else None
                break
        scope.setdefault("state", {})["request_id"] = rid or uuid.uuid4().hex
        header = (REQUEST_ID_HEADER.lower().encode(), scope["state"]["request_id"].encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(k.lower() == header[0] for k, _ in headers):
                    headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as e:  # noqa: BLE001 - the last line of defence: answer 500, log the cause
            if started:
                log.error("request %s failed after its answer started", scope["state"]["request_id"], exc_info=e)
                raise
            await exception_response(e, scope)(scope, receive, send)
