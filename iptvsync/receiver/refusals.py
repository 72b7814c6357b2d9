"""The receiver's refusal log lines, rate-limited: a flood of refused requests must not fill the disk.

Every refusal is still counted, exactly, in the ledger's ``rejections`` (the writer's job); only
the log lines are limited. Per (status, reason), the first ``burst`` refusals of each
``interval_s`` window are logged one by one; the rest of that window becomes one line when it
ends::

    ... and 4,980 more refusals (403 chave_unica missing or wrong) in the last 10 s, not logged one by one

The window's end is noticed by the next refusal of that reason, or by a timer started with the
window's first unlogged refusal, or at exit; so the summary of a flood that stopped is written
within ``interval_s``. A flood costs ``burst`` + 1 lines per reason per window, whatever its rate.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import weakref

#: refusals logged one by one per (status, reason) and window
BURST = 10
#: the window, in seconds
INTERVAL_S = 10.0


class RefusalLog:
    """``admit(status, reason)``: log this refusal's lines (True) or count it for the summary."""

    def __init__(self, logger: logging.Logger, *, burst: int = BURST, interval_s: float = INTERVAL_S):
        self.log, self.burst, self.interval_s = logger, burst, interval_s
        self._lock = threading.Lock()
        #: (status, reason) -> [window start (monotonic), logged, not logged]
        self._windows: dict[tuple[int, str], list] = {}
        atexit.register(_flush_at_exit, weakref.ref(self))

    def admit(self, status: int, reason: str) -> bool:
        now = time.monotonic()
        with self._lock:
            window = self._windows.get((status, reason))
            if window is None or now - window[0] >= self.interval_s:
                if window is not None:
                    self._summarise(status, reason, window)
                window = self._windows[status, reason] = [now, 0, 0]
            if window[1] < self.burst:
                window[1] += 1
                return True
            window[2] += 1
            if window[2] == 1:  # the first one not logged: make sure its window is summed up
                timer = threading.Timer(window[0] + self.interval_s - now + 0.05, self.flush)  # just past it
                timer.daemon = True
                timer.start()
            return False

    def flush(self, everything: bool = False) -> None:
        """Write the summary of each window that has ended (``everything``: of every window)."""
        now = time.monotonic()
        with self._lock:
            for (status, reason), window in list(self._windows.items()):
                if everything or now - window[0] >= self.interval_s:
                    self._summarise(status, reason, window)
                    del self._windows[status, reason]

    def _summarise(self, status: int, reason: str, window: list) -> None:
        if window[2]:
            seconds = math.ceil(min(time.monotonic() - window[0], self.interval_s))
            self.log.warning("... and %s more refusals (%d %s) in the last %d s, not logged one by one",
                             f"{window[2]:,}", status, reason, seconds)


def _flush_at_exit(ref: weakref.ref) -> None:
    refusals = ref()
    if refusals is not None:
        refusals.flush(everything=True)
