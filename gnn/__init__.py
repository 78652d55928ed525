"""Models and training (PyTorch Geometric LightGCN, text encoder, fusion, evaluation).

Reads training snapshots (:mod:`graphrec.snapshot`); never imports ``neo4j``.
"""
