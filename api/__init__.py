"""Serving layer of graphrec: the FastAPI service, its settings and the ``graphrec`` CLI."""
