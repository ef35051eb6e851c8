"""The in-process TTL cache behind the key cache: expiry, its size bound, and 0 turning it off."""

from __future__ import annotations

import pytest

from wandb_files.server.http import cache
from wandb_files.server.http.cache import TtlCache


def test_entries_expire_after_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1000.0
    monkeypatch.setattr(cache.time, "monotonic", lambda: now)
    entries: TtlCache[str, int] = TtlCache(5.0)
    entries.put("k", 1)
    now += 4.9
    assert entries.get("k") == 1
    now += 0.2
    assert entries.get("k") is None
    assert entries.get("k") is None  # and it is gone, not only hidden


def test_the_oldest_entry_makes_room_and_zero_seconds_keeps_nothing() -> None:
    entries: TtlCache[int, int] = TtlCache(60.0, max_entries=3)
    for i in range(5):
        entries.put(i, i)
    assert [entries.get(i) for i in range(5)] == [None, None, 2, 3, 4]
    entries.discard(3)
    assert entries.get(3) is None
    off: TtlCache[str, int] = TtlCache(0)
    off.put("k", 1)
    assert off.get("k") is None
