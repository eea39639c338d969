"""The definitions the intake reads, kept for a moment: one read a second per container,
not one per event.

Every event reads its workflow's item and its services' items. At thousands of events a
second those few items are the hottest keys of the table: an item is one partition, which
serves about 3,000 read units a second (a strongly consistent read of an item up to 4 KB is
one), so one busy workflow, or a service every workflow calls, would cap the deployment. A
container that keeps what it read for `max_age` seconds (template.yaml's
DefinitionCacheSeconds, 1 by default) reads each at most once a second, whatever the rate.
What it costs: an update reaches the events accepted up to `max_age` later, as an update of
a Step Functions state machine reaches the executions started a moment later. Only what was
found is kept: a definition just created is sendable at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CAPACITY = 1024  # definitions a container keeps at once (a memory bound, never a rule)


class Recent(Generic[K, V]):
    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._kept: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        if self.max_age <= 0:
            return None
        with self._lock:
            kept = self._kept.get(key)
        if kept is None or self._clock() - kept[0] >= self.max_age:
            return None
        return kept[1]

    def put(self, key: K, value: V) -> V:
        if self.max_age > 0:
            with self._lock:
                if len(self._kept) >= CAPACITY:
                    self._kept.clear()
                self._kept[key] = (self._clock(), value)
        return value
