"""Closed-form graph filters (GF-CF, Chebyshev filters, EASE) behind the :class:`gnn.models.Recommender` interface.

Importing the package registers the model types ``gfcf``, ``chebycf`` and ``ease``.
"""

from gnn.filters.base import GraphFilter
from gnn.filters.chebyshev import ChebyshevFilter
from gnn.filters.ease import EASE
from gnn.filters.gfcf import GFCF

__all__ = ["EASE", "GFCF", "ChebyshevFilter", "GraphFilter"]
