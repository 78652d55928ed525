"""The serving layer for live models: users scored from their history as it is in the graph now.

- :mod:`graph.serving.store`: :class:`GraphStore`, the one object serving code holds (driver,
  database, dataset).
- :mod:`graph.serving.filters`: the business filters as composable Cypher predicates.
- :mod:`graph.serving.publish_live`: writes a :class:`gnn.live.LiveForm` (item factors behind a
  vector index, ``NEIGHBOUR`` relationships, popularity) and flips the ``(:ActiveModel)`` pointer.
- :mod:`graph.serving.tables`: the immutable per-publication item tables a process keeps in memory.
- :mod:`graph.serving.live`: the live candidate source and its exact top-k (threshold bound).
- :mod:`graph.serving.explain_live`: the ``neighbour`` explanation kind ("because you liked X").
- :mod:`graph.serving.planner`: picks the source for a request from the active model's kind.
"""
