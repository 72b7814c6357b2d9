"""A per-run circuit breaker for one panel: after a few failures in a row, stop calling it.

A panel that keeps failing would otherwise cost every subscription its timeout; the other
panels go on, and the next run tries again with a closed breaker.
"""

from __future__ import annotations

import threading

BREAKER_THRESHOLD = 3  # consecutive failures that stop calls to a panel for the rest of the run


class Breaker:
    def __init__(self, threshold: int = BREAKER_THRESHOLD):
        self.threshold = threshold
        self.failures = 0
        self.lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold

    def record(self, ok: bool, trip: bool = False) -> None:
        with self.lock:
            self.failures = 0 if ok else (self.threshold if trip else self.failures + 1)
