"""Hyperparameters of the graph filters as pydantic configs (one docstring per field).

A config builds its model with :meth:`FilterConfig.build`; configs save and reload unchanged
(``model_dump`` / ``model_validate``), and :func:`filter_config` makes one from a model name.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphrec.errors import InvalidArgumentError
from gnn.filters.base import DEFAULT_CORRECTION_RANK, DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.filters.ease import DEFAULT_MAX_BYTES
from gnn.models import build_model


class FilterConfig(BaseModel):
    """Settings shared by every graph filter."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str
    """Registered model type."""
    neighbours_top_k: int | None = Field(DEFAULT_NEIGHBOURS_TOP_K, gt=0)
    """Item-item weights kept per item (what serving stores as NEIGHBOUR edges); the scorer uses the
    truncated matrix so evaluation measures what is served. ``None``: exact item-item part."""
    batch_users: int = Field(1024, gt=0)
    """Items per block when computing the top-k neighbours."""
    correction_rank: int = Field(DEFAULT_CORRECTION_RANK, ge=0)
    """Rank of the low-rank correction that gives the cut item-item part back what the cut dropped:
    the served low-rank part becomes the best low-rank approximation of the scores the cut misses on
    the training histories (:mod:`gnn.filters.correction`). 0: none."""
    factor_rank: int | None = Field(None, gt=0)
    """With a correction, the rank of the whole served low-rank part (correction and low-pass filter):
    the factor width serving multiplies per request and stores per item. ``None``: the larger of the
    low-pass rank and ``correction_rank``."""

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments of the model (everything but ``model``; ``factor_rank`` resolved)."""
        kwargs = self.model_dump(exclude={"model"})
        if kwargs.get("factor_rank") is None and kwargs.get("correction_rank"):
            low_pass = kwargs.get("rank", 0) if kwargs.get("alpha", 0) else 0
            kwargs["factor_rank"] = max(int(low_pass), int(kwargs["correction_rank"]))
        return kwargs

    def build(self, num_users: int, num_items: int) -> GraphFilter:
        """An unfitted model of this config."""
        import gnn.filters  # noqa: F401  (registers the filters)

        model = build_model(self.model, num_users=num_users, num_items=num_items, **self.model_kwargs())
        if not isinstance(model, GraphFilter):
            raise InvalidArgumentError(f"{self.model!r} is not a graph filter")
        return model


class GFCFConfig(FilterConfig):
    """:class:`gnn.filters.gfcf.GFCF` settings."""

    model: Literal["gfcf"] = "gfcf"
    """Model type."""
    alpha: float = Field(0.3, ge=0)
    """Weight of the ideal low-pass filter."""
    rank: int = Field(256, ge=0)
    """Rank of the ideal low-pass filter (top singular vectors of the normalised interactions)."""
    power: float = 0.5
    """Degree exponent around the low-pass filter."""
    sharpen: float = Field(0.0, ge=0)
    """Sharpening time T (BSPM's inverse heat equation); 0 is plain GF-CF."""
    sharpen_order: int = Field(1, ge=1, le=8)
    """Order of the one explicit step that solves the sharpening: 1 is Euler (scores times I - T P~), 4 is the
    classical Runge-Kutta step (scores times sum_{k<=4} (-T P~)^k / k!, BSPM's Gowalla recipe)."""


class ChebyCFConfig(FilterConfig):
    """:class:`gnn.filters.chebyshev.ChebyshevFilter` settings."""

    model: Literal["chebycf"] = "chebycf"
    """Model type."""
    order: int = Field(8, ge=0, le=64)
    """Chebyshev polynomial order (sparse products per block: two per order)."""
    flatness: float = Field(1.0, gt=0)
    """Flatness of the target low-pass response (1: the linear filter)."""
    alpha: float = Field(0.2, ge=0)
    """Weight of the ideal low-pass filter."""
    rank: int = Field(256, ge=0)
    """Rank of the ideal low-pass filter."""
    power: float = 0.3
    """Degree normalisation exponent (signal scaled by degree^-power before, degree^power after)."""


class EASEConfig(FilterConfig):
    """:class:`gnn.filters.ease.EASE` settings."""

    model: Literal["ease"] = "ease"
    """Model type."""
    reg: float = Field(250.0, gt=0)
    """L2 weight lambda."""
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    """Memory limit of the dense item-item matrices (12 * items^2 bytes); over it, fitting refuses."""


AnyFilterConfig = Union[GFCFConfig, ChebyCFConfig, EASEConfig]
FILTER_CONFIGS: dict[str, type[FilterConfig]] = {"gfcf": GFCFConfig, "chebycf": ChebyCFConfig, "ease": EASEConfig}
"""Config class per filter model type."""


def filter_config(model: str, **overrides: Any) -> FilterConfig:
    """The default config of ``model`` with ``overrides`` (give only the settings to change;
    ``neighbours_top_k=None`` means the exact item-item part).

    Raises:
        InvalidArgumentError: Unknown model or an invalid value.
    """
    cls = FILTER_CONFIGS.get(model)
    if cls is None:
        raise InvalidArgumentError(f"unknown graph filter {model!r}; use one of {sorted(FILTER_CONFIGS)}")
    try:
        return cls(**overrides)
    except ValidationError as e:
        raise InvalidArgumentError(f"invalid {model} settings: {e}", errors=e.errors()) from e


def load_filter_config(data: dict[str, Any]) -> FilterConfig:
    """Rebuild a config from its ``model_dump()``."""
    return filter_config(str(data.get("model")), **{k: v for k, v in data.items() if k != "model"})
