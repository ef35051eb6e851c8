"""A small in-process map whose entries expire: what lets a download skip the database while it is hot."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries live `seconds` after they were put (0 disables the cache), at most `max_entries` at once.

    Reads take no lock (a dict lookup is atomic); writes come from worker threads too, so they do.

    Args:
        seconds: How long an entry is served after it was put: the bound on how stale an answer can be.
        max_entries: When full, the oldest entry makes room.
    """

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value put under `key`, if it has not expired.

        Args:
            key: What it was put under.

        Returns:
            The value, or None when there is none or it is older than `seconds`.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self.discard(key)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key` for `seconds` from now.

        Args:
            key: The key.
            value: The value.
        """
        if self.seconds <= 0:
            return
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
            self._entries[key] = (time.monotonic() + self.seconds, value)

    def discard(self, key: K) -> None:
        """Forget `key`, if it is there.

        Args:
            key: The key.
        """
        with self._lock:
            self._entries.pop(key, None)
