"""Vector cache keyed by (model identity, sha256 of the text).

One ``.npz`` file per model identity under ``<settings.home>/text-cache/``. A batch reload
re-encodes only texts whose hash is not stored; when every text is a hit the model is not even
loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from graphrec.errors import DataError
from gnn.text.encoder import TextEncoder


def text_hash(text: str) -> str:
    """sha256 hex digest of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EncodeStats(BaseModel):
    """What :func:`encode_with_cache` did."""

    texts: int
    cache_hits: int
    encoded: int
    seconds: float
    texts_per_s: float | None = None  # throughput of the model on the encoded texts (None when nothing was encoded)
    model: str


class TextCache:
    """A persistent ``hash -> vector`` store for one model identity.

    Args:
        root (Path): Cache folder (e.g. ``settings.home / "text-cache"``).
        identity (str): The encoder's :attr:`TextEncoder.identity`.
    """

    def __init__(self, root: str | os.PathLike[str], identity: str) -> None:
        self.path = Path(root) / f"{identity}.npz"
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        keys, vectors = self._read()
        if len(keys):
            self._vectors = vectors
            self._index = {str(k): i for i, k in enumerate(keys)}

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.path.exists():
            return np.zeros(0, dtype="U64"), np.zeros((0, 0), np.float32)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                return z["keys"], z["vectors"].astype(np.float32, copy=False)
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"text cache {self.path} is unreadable ({e}); delete it to rebuild") from e

    def __len__(self) -> int:
        return len(self._index)

    def get(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Look hashes up.

        Returns:
            ``(rows, found)``: row of each hash in the store (-1 if missing) and a bool mask.
        """
        rows = np.fromiter((self._index.get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))
        return rows, rows >= 0

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors at ``rows``."""
        return self._vectors[rows]

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Add vectors (hashes already stored are skipped) and save atomically."""
        new = [(h, i) for i, h in enumerate(hashes) if h not in self._index]
        if not new:
            return
        seen: dict[str, int] = {}
        for h, i in new:
            seen.setdefault(h, i)
        add = np.asarray(vectors, dtype=np.float32)[list(seen.values())]
        base = len(self._index)
        self._vectors = add if base == 0 else np.concatenate([self._vectors, add])
        for j, h in enumerate(seen):
            self._index[h] = base + j
        self.save()

    def save(self) -> None:
        """Write the store (temp file + rename) under an exclusive lock, first merging entries that
        another process wrote since this cache was read (several commands share one cache)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            disk_keys, disk_vectors = self._read()
            extra = [n for n, k in enumerate(disk_keys) if str(k) not in self._index]
            if extra and len(self._index):
                base = len(self._index)
                self._vectors = np.concatenate([self._vectors, disk_vectors[extra]])
                for j, n in enumerate(extra):
                    self._index[str(disk_keys[n])] = base + j
            keys = np.array(list(self._index), dtype="U64")
            fd, tmp = tempfile.mkstemp(prefix=".textcache.", suffix=".npz", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, keys=keys, vectors=self._vectors)
                os.replace(tmp, self.path)
            except OSError as e:
                Path(tmp).unlink(missing_ok=True)
                raise DataError(f"cannot write text cache {self.path}: {e}") from e


def encode_with_cache(
    encoder: TextEncoder,
    texts: list[str],
    cache_dir: str | os.PathLike[str] | None,
    progress: bool = False,
) -> tuple[np.ndarray, EncodeStats]:
    """Encode texts, reusing cached vectors; only misses reach the model.

    Args:
        encoder: The encoder (loaded lazily, only if something misses).
        texts: Texts in item order.
        cache_dir: Cache folder, or None for no cache.
        progress: tqdm bar over the misses.

    Returns:
        ``(vectors, stats)`` with vectors in the order of ``texts``.
    """
    t0 = time.perf_counter()
    if cache_dir is None:
        vecs = encoder.encode(texts, progress=progress)
        dt = time.perf_counter() - t0
        return vecs, EncodeStats(texts=len(texts), cache_hits=0, encoded=len(texts), seconds=dt,
                                 texts_per_s=encoder.last_throughput, model=encoder.identity)
    cache = TextCache(cache_dir, encoder.identity)
    hashes = [text_hash(t) for t in texts]
    rows, found = cache.get(hashes)
    missing = np.flatnonzero(~found)
    # encode each distinct missing text once
    uniq: dict[str, int] = {}
    for i in missing:
        uniq.setdefault(hashes[i], int(i))
    tps = None
    if uniq:
        new_vecs = encoder.encode([texts[i] for i in uniq.values()], progress=progress)
        tps = encoder.last_throughput
        cache.put(list(uniq), new_vecs)
        rows, found = cache.get(hashes)
    dim = cache.vectors(rows[:1]).shape[1] if len(rows) else encoder.dim
    out = cache.vectors(rows) if len(rows) else np.zeros((0, dim), dtype=np.float32)
    dt = time.perf_counter() - t0
    return out, EncodeStats(texts=len(texts), cache_hits=int(len(texts) - len(missing)), encoded=len(uniq),
                            seconds=dt, texts_per_s=tps, model=encoder.identity)
