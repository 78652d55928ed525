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

    Args:
        size: Values kept.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, load: Callable[[], V], key_of: Callable[[V], K]) -> V:
        """The value under ``key``; on a miss, ``load()`` it and store it under ``key_of(value)``.

        The stored key may differ from the asked one when what was loaded is newer (a load flipped
        the generation in between): the value is kept under the key it really has.
        """
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
            value = load()
            self._items[key_of(value)] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return value

    def find(self, match: Callable[[K], bool]) -> V | None:
        """The most recently used value whose key ``match``es, or ``None`` (nothing is loaded)."""
        with self._lock:
            for key in reversed(self._items):
                if match(key):
                    return self._items[key]
        return None

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()
