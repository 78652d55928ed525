"""Request and response schemas of the REST API (separate classes for what comes in and goes out)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from graph.explain import Explanation, Reason
from graph.recommend import Filters, RecommendedItem


ARG_PATTERN = r"^[A-Za-z0-9_.,:=/@+-]+$"
"""What a command-line argument of an admin job may contain (no shell is involved; see :func:`api.jobs.check_args`)."""


class RecommendedItemOut(RecommendedItem):
    """A recommended item, with its explanation when ``explain=true``."""

    explanation: Explanation | None = None


class RecommendationsOut(BaseModel):
    """A list of recommendations and the model that produced them."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "dataset": "movielens", "model_version": "lightgcn-20261122-1301", "user_id": "1",
        "items": [{"item_id": "1221", "title": "Godfather: Part II, The (1974)", "year": 1974, "genres": ["Crime", "Drama"],
                   "score": 7.42, "rank": 1, "explanation": {
                       "item_id": "1221", "title": "Godfather: Part II, The (1974)",
                       "sentence": "Godfather: Part II, The (1974): recommended because it is liked by 37 users who also rated Heat (1995) 5/5 like you and it shares Crime and Drama with Heat (1995), which you rated 5/5.",
                       "reasons": [{"kind": "collaborative", "weight": 0.41, "text": "liked by 37 users who also rated Heat (1995) 5/5 like you",
                                    "anchor_item_id": "6", "anchor_rating": 5.0, "count": 37, "witnesses": ["18", "42", "57"]}]}}],
    }]})

    dataset: str
    model_version: str
    user_id: str | None = None
    item_id: str | None = None
    items: list[RecommendedItemOut]


class ColdStartIn(BaseModel):
    """Cold start: a few liked items and/or a free-text description of what the user wants."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: schema.update({
        "examples": [{"liked_item_ids": ["6", "1221"], "k": 5},
                     {"text": "a tense heist thriller with a great cast", "k": 5, "genres": ["Crime"]}],
        # what _something checks, in the schema: at least one liked item, or a text with a non-blank character
        "anyOf": [{"required": ["liked_item_ids"], "properties": {"liked_item_ids": {"minItems": 1}}},
                  {"required": ["text"], "properties": {"text": {"type": "string", "pattern": "\\S"}}}]}))

    liked_item_ids: list[str] = Field(default_factory=list, max_length=200, description="Items the user likes.")
    text: str | None = Field(None, max_length=2000, description="Free text, encoded with the model's text encoder.")
    k: int = Field(10, ge=1, le=100)
    genres: list[str] | None = Field(None, max_length=50)
    year_min: int | None = Field(None, ge=0, le=3000)
    year_max: int | None = Field(None, ge=0, le=3000, description="Not below year_min (422 otherwise).")
    exclude_ids: list[str] = Field(default_factory=list, max_length=1000)
    diversity: float = Field(0.0, ge=0.0, le=1.0)
    explain: StrictBool = False

    @model_validator(mode="after")
    def _something(self) -> ColdStartIn:
        if not self.liked_item_ids and not (self.text and self.text.strip()):
            raise ValueError("give liked_item_ids and/or a non-empty text")
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError("year_min must not exceed year_max")
        return self

    def filters(self) -> Filters:
        """The business filters of this request."""
        return Filters(exclude_seen=False, genres=self.genres, year_min=self.year_min, year_max=self.year_max,
                       exclude_ids=self.exclude_ids, diversity=self.diversity)


class InteractionIn(BaseModel):
    """Feedback to record: the user interacted with (rated) the item."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_id": "1", "item_id": "1221", "rating": 4.5}]})

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    rating: float | None = Field(None, ge=0.0, le=10.0, description="Explicit rating; null for implicit feedback.")
    ts: int | None = Field(None, ge=0, description="Unix seconds; default: now.")
    create_user: StrictBool = Field(False, description="Create the user when unknown (otherwise 404).")


class InteractionOut(BaseModel):
    """What was written into the graph."""

    user_id: str
    item_id: str
    rating: float | None
    ts: int | None
    created_user: bool
    created_relationship: bool
    liked_before: bool = Field(False, description="The user liked the item before this write (rating at or above the like "
                                                  "threshold, 4 by default, or implicit feedback).")
    liked_after: bool = Field(False, description="The user likes the item after this write (co-like explanations were "
                                                 "updated when this differs from liked_before).")
    replayed: bool = Field(False, description="The same rating and ts were already stored: nothing was written (a resent "
                                              "request is safe).")
    outdated: bool = Field(False, description="A rating with a later ts is stored for this user and item: nothing was written.")


class HealthOut(BaseModel):
    """Liveness of the API, reachability of Neo4j, the active model."""

    model_config = ConfigDict(protected_namespaces=())

    status: Literal["ok", "degraded", "down"] = Field(description="ok: the active model serves the active generation; degraded: "
                                                      "answers may fail or miss items (see reason); down: Neo4j is unreachable (503).")
    neo4j: Literal["ok", "unreachable"]
    dataset: str
    model_version: str | None = None
    model_tag: str | None = None
    published_at: str | None = None
    detail: str | None = None
    reason: str | None = Field(None, description="Why the status is not ok (no model published, model does not cover the active "
                                                 "generation, Neo4j unreachable).")
    generation: int | None = Field(None, description="Active load generation of the dataset.")
    model_generation: int | None = Field(None, description="Generation the active model's vectors are on.")
    coverage: float | None = Field(None, description="Share of the active generation's items with a vector of the active model.")
    reloading: bool | None = Field(None, description="A load of the dataset is running.")
    text_model: Literal["loading", "ready", "none", "failed"] = Field(
        "none", description="The active model's text model (free-text cold start): `loading` (text requests answer 503), "
                            "`ready`, `none` (the model has none) or `failed` (see text_model_detail).")
    text_model_detail: str | None = None


class ReloadIn(BaseModel):
    """A batch reload: runs ``graphrec load <source> ...`` then republishes the active model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"source": "movielens", "mode": "replace"}]})

    source: Literal["movielens", "lightgcn", "csv"] = "movielens"
    path: str | None = Field(None, max_length=300, pattern=ARG_PATTERN,
                             description="Data folder (default: the bundled data for movielens); letters, digits and `_.,:=/@+-`.")
    mode: Literal["upsert", "replace"] = "upsert"
    republish: StrictBool = Field(True, description="upsert: publish the active model's checkpoint again afterwards (embeds new items "
                                              "from text). A replace carries the active model into the new graph instead.")
    drop_feedback: StrictBool = Field(False, description="replace: drop the interactions written through the API instead of carrying "
                                                   "them into the new graph.")
    refit: StrictBool = Field(True, description="replace: afterwards fit and publish the default model on the new graph (further "
                                          "steps of the same job; the carried model serves until it switches).")


class TrainIn(BaseModel):
    """A retraining: ``graphrec snapshot export``, ``graphrec fit`` (the default model), then ``graphrec publish``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"epochs": 20}]})

    epochs: int | None = Field(None, ge=1, le=10_000)
    extra_args: list[Annotated[str, Field(max_length=300, pattern=ARG_PATTERN)]] = Field(
        default_factory=list, max_length=20,
        description="More `graphrec fit` options (each one `--name` or a value; letters, digits and `_.,:=/@+-`).")
    publish: StrictBool = True
    lightgcn: StrictBool = Field(False, description="Also train LightGCN on the snapshot (`graphrec train --recipe default`; a GPU "
                                 "helps) and fuse it into the default model with a weight chosen on validation.")


class JobOut(BaseModel):
    """A background admin job (kept in Neo4j: it outlives the API process)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "5c1e0a9b2f44", "kind": "reload", "state": "running", "progress": 0.5, "step": 2, "steps": 2,
        "commands": [["graphrec", "load", "movielens", "--mode", "replace"], ["graphrec", "publish", "--checkpoint", "...", "--dataset", "movielens"]],
        "messages": ["$ graphrec load movielens --mode replace", "loaded 100836 interactions"], "log_tail": "...",
        "created_at": "2026-12-07T03:00:00Z", "started_at": "2026-12-07T03:00:01Z", "finished_at": None,
        "updated_at": "2026-12-07T03:00:40Z", "returncode": None, "error": None}]})

    id: str
    kind: Literal["reload", "train"]
    dataset: str | None = None
    state: Literal["queued", "running", "succeeded", "failed", "interrupted"] = Field(
        description="`interrupted`: the API process running it stopped before it finished.")
    progress: float = Field(0.0, ge=0.0, le=1.0, description="Finished steps / steps.")
    step: int = Field(0, description="The step running now (1-based; 0 before the first).")
    steps: int = 0
    commands: list[list[str]]
    messages: list[str] = Field(default_factory=list, description="The last lines of the job's output.")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    returncode: int | None = None
    error: str | None = None
    log_tail: str = Field("", description="`messages` joined with newlines.")

    @classmethod
    def of(cls, job: Any) -> JobOut:
        """From a :class:`graph.jobs_store.JobRecord`."""
        data = job.model_dump(include=set(cls.model_fields) - {"log_tail"})
        return cls(**data, log_tail="\n".join(job.messages))


class JobListOut(BaseModel):
    """Admin jobs, newest first."""

    jobs: list[JobOut]


class ErasureOut(BaseModel):
    """What an erasure removed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "dataset": "movielens", "user_id": "42", "generations": [3], "interactions": 120, "tags": 0,
        "co_like_pairs_reweighted": 5311, "co_like_pairs_removed": 12, "witness_lists": 40, "tag_counts": 0}]})

    dataset: str
    user_id: str
    generations: list[int] = Field(description="Generations of the dataset the user was removed from.")
    interactions: int = Field(description="Interactions (loaded and feedback) deleted.")
    tags: int = Field(description="Tag applications deleted.")
    co_like_pairs_reweighted: int
    co_like_pairs_removed: int
    witness_lists: int = Field(description="Co-like witness lists the user was removed from.")
    tag_counts: int = Field(description="Item-tag links whose count reached 0, deleted.")


class ValidationErrorOut(BaseModel):
    """One validation problem: where (``loc``), what (``type``) and a sentence (``msg``)."""

    type: str
    loc: list[str | int]
    msg: str


class ErrorOut(BaseModel):
    """Every error response: a stable ``code``, a ``message`` (also as ``detail``) and the request id.

    The request id is also in the ``X-Request-ID`` header; the server logs every 5xx with it and the cause.
    """

    code: str = Field(description="Stable machine-readable error code, e.g. `unknown_user`, `validation_error`, `neo4j_unavailable`.")
    message: str = Field(description="What went wrong, for people.")
    detail: str = Field(description="Same as `message`.")
    request_id: str = Field(description="Id of this request (also the `X-Request-ID` header); quote it when reporting a problem.")
    errors: list[ValidationErrorOut] | None = Field(None, description="Validation problems (422 only).")


def _example(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "detail": message, "request_id": "3f2a9c0d1b7e4c55a0e6f1d2c3b4a596"}
    if errors:
        body["errors"] = errors
    return {"model": ErrorOut, "content": {"application/json": {"example": body}}}


def error_response(status: int, description: str, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry with the :class:`ErrorOut` schema and an example body."""
    entry = _example(status, code, message, errors)
    entry["description"] = description
    if status == 503:
        entry["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    return entry


#: The error answers every ``/v1`` operation can give (FastAPI merges route-specific entries over these).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(400, "The request body could not be parsed.", "invalid_body", "There was an error parsing the body"),
    413: error_response(413, "The request body is larger than GRAPHREC_MAX_BODY_BYTES.", "body_too_large",
                        "request body larger than 1000000 bytes"),
    422: error_response(422, "Invalid parameters or body.", "validation_error", "invalid request: query.k: Input should be greater than or equal to 1",
                        [{"type": "greater_than_equal", "loc": ["query", "k"], "msg": "Input should be greater than or equal to 1"}]),
    500: error_response(500, "Internal error (logged on the server with the request id).", "internal_error", "internal error"),
    503: error_response(503, "Neo4j unreachable, no model published, or the text model still loading (Retry-After).",
                        "neo4j_unavailable", "the database is not reachable right now; retry later"),
}


__all__ = [
    "COMMON_ERRORS", "ColdStartIn", "ErasureOut", "ErrorOut", "Explanation", "HealthOut", "InteractionIn", "InteractionOut", "JobListOut", "JobOut", "Reason",
    "RecommendationsOut", "RecommendedItemOut", "ReloadIn", "TrainIn", "ValidationErrorOut", "error_response",
]
