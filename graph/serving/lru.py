"""A small thread-safe LRU that loads a value on a miss (the process caches of :mod:`graph.serving`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadingLRU(Generic[K, V]):
    """At most ``size`` values by key, least recently used dropped first; thread-safe.

    A miss loads the value outside the cache's lock, under a lock of its own key: concurrent misses of
    one key load it once, and a slow load (seconds, for a big publication) holds up no other key.

    Args:
        size: Values kept.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[K, V] = OrderedDict()
        self._gates: dict[K, threading.Lock] = {}

    def _hit(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def get(self, key: K, load: Callable[[], V], key_of: Callable[[V], K]) -> V:
        """The value under ``key``; on a miss, ``load()`` it and store it under ``key_of(value)``.

        The stored key may differ from the asked one when what was loaded is newer (a load flipped
        the generation in between): the value is kept under the key it really has.
        """
        hit = self._hit(key)
        if hit is not None:
            return hit
        with self._lock:
            gate = self._gates.setdefault(key, threading.Lock())
        with gate:
            hit = self._hit(key)  # loaded by the writer this one waited for
            if hit is not None:
                return hit
            try:
                value = load()
                with self._lock:
                    stored = key_of(value)
                    self._items[stored] = value
                    self._items.move_to_end(stored)
                    while len(self._items) > self._size:
                        self._items.popitem(last=False)
                return value
            finally:
                with self._lock:
                    if self._gates.get(key) is gate:
                        del self._gates[key]

    def peek(self, key: K) -> V | None:
        """The value under ``key`` if it is loaded (counts as a use), else ``None``; never loads."""
        return self._hit(key)

    def find(self, match: Callable[[K], bool]) -> tuple[K, V] | None:
        """The most recently used key that ``match``es, with its value, or ``None`` (nothing is loaded)."""
        with self._lock:
            for key in reversed(self._items):
                if match(key):
                    return key, self._items[key]
        return None

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()
