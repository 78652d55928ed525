"""Fusion of graph (LightGCN) and content (BERT text, precomputed feature vectors) signals.

- :mod:`gnn.fusion.feature`: feature-level fusion, :class:`FusedLightGCN` (registered as ``lightgcn_fused``).
- :mod:`gnn.fusion.scores`: score-level fusion of graph, content and popularity scores.
- :mod:`gnn.fusion.coldstart`: cold-start projection and the :class:`ColdStart` serving API.
- :mod:`gnn.fusion.experiment`: the benchmark protocol behind ``graphrec bench fusion``.
"""

from gnn.fusion.feature import FusedLightGCN

__all__ = ["FusedLightGCN"]
