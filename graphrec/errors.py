"""The one error hierarchy of graphrec.

Every error the product raises on purpose derives from :class:`GraphrecError`. Lower-level
errors (driver, OS, parsing) are wrapped with ``raise SomeError(...) from e``. The CLI maps
``exit_code`` to the process exit status and prints ``str(error)`` as one line; the API maps
``http_status`` to the response status in one exception handler.
"""

from __future__ import annotations

from typing import Any


class GraphrecError(Exception):
    """Root of all graphrec errors.

    Attributes:
        exit_code: Process exit status the CLI uses for this error.
        http_status: HTTP status the API uses for this error.
    """

    exit_code: int = 1
    http_status: int = 500


class ConfigError(GraphrecError):
    """Invalid or missing configuration (settings, CLI arguments, files)."""

    exit_code = 2
    http_status = 500


class InvalidArgumentError(GraphrecError):
    """A caller passed an argument that fails validation.

    Attributes:
        errors: Structured validation errors (pydantic's ``errors()`` format when available).
    """

    exit_code = 2
    http_status = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Neo4jError(GraphrecError):
    """Base class for problems with the Neo4j server."""

    exit_code = 3
    http_status = 503


class ProvisionError(Neo4jError):
    """The project could not assemble or start its own Neo4j server (Java, Maven, ports...)."""

    exit_code = 3


class Neo4jUnavailableError(Neo4jError):
    """Neo4j does not answer (not started, stopped, network)."""

    exit_code = 4
    http_status = 503


class Neo4jAuthError(Neo4jError):
    """Neo4j rejected the credentials."""

    exit_code = 5
    http_status = 503


class QueryError(Neo4jError):
    """A Cypher query failed for a reason other than availability or auth."""

    exit_code = 6
    http_status = 500


class WriteConflictError(Neo4jError):
    """A write kept failing on transient conflicts with concurrent writes (lock waits, deadlocks) after
    its bounded retries. Nothing of it was written; the same request is safe to send again later."""

    exit_code = 12
    http_status = 503


class DataError(GraphrecError):
    """Input data is unreadable or invalid."""

    exit_code = 7
    http_status = 422


class ValidationFailedError(DataError):
    """Too many rows were rejected by validation; nothing from the rejected file was written.

    Attributes:
        problems: The rejected rows as ``(file, line, reason)`` tuples (possibly truncated).
    """

    def __init__(self, message: str, problems: list[tuple[str, int, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class LoadError(GraphrecError):
    """A batch load or reload failed; for ``replace`` loads the previous graph is kept."""

    exit_code = 8
    http_status = 500


class SnapshotError(DataError):
    """A training snapshot is missing, corrupt or of an unsupported format version."""


class NotFoundError(GraphrecError):
    """A requested entity does not exist."""

    exit_code = 9
    http_status = 404


class UnknownUserError(NotFoundError):
    """The user id is not in the graph (or not in the model's vocabulary)."""


class UnknownItemError(NotFoundError):
    """The item id is not in the graph (or not in the model's vocabulary)."""


class ModelError(GraphrecError):
    """Training, checkpoint or inference problems."""

    exit_code = 10
    http_status = 500


class ModelNotReadyError(ModelError):
    """No trained model / embeddings are available yet for serving."""

    http_status = 503


class TextModelError(ModelError):
    """The text encoder could not be loaded (for example a hub name with no hub configured)."""


class PublishRefusedError(ModelError):
    """``graphrec publish`` refused a model that does not belong to the target dataset's active graph."""

    exit_code = 11
    http_status = 409


class DatasetMismatchError(PublishRefusedError):
    """The checkpoint was trained on another dataset than the one it would be published onto."""


class CoverageTooLowError(PublishRefusedError):
    """The model's item vocabulary covers too little of the active generation's items."""
