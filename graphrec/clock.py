"""Timestamps as graphrec writes them into manifests, checkpoints, training states and jobs."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-11-23T05:20:07+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
