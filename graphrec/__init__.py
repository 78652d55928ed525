"""Shared contracts of graphrec: the error hierarchy, the snapshot format and the named splits.

The product's code lives in the sibling packages ``loaders``, ``graph``, ``gnn`` and ``api``;
this package holds only what more than one of them must agree on and imports nothing heavy.
"""

__version__ = "0.1.0"
