"""Signals for ``serve``: a handler only writes the signal's number to a pipe; a thread acts.

A Python signal handler runs on the main thread between two bytecodes, possibly inside another
handler or inside code that holds a lock. A handler that takes a lock itself (the certificate
reload did) waits forever for its own thread when a second signal arrives while the first is
handled: two SIGHUPs 30 ms apart hung the receiver, SIGTERM included. ``os.write`` to a
non-blocking pipe takes no lock, so the handlers here do nothing else; the ``signals`` thread
reads the pipe and stops the server or reloads the certificate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("iptvsync.receiver")

STOPS = (signal.SIGTERM, signal.SIGINT)


class SignalThread:
    """``on_stop(signum)`` on the first SIGTERM/SIGINT (run to its end: the drain), ``on_hup()``
    once per batch of SIGHUPs (a burst of ten reloads once or twice, never deadlocks)."""

    def __init__(self, on_stop: Callable[[int], None], on_hup: Callable[[], None]):
        self.on_stop, self.on_hup = on_stop, on_hup
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self.stopping = False
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signals", daemon=True)

    def install(self) -> None:
        self._before = {signum: signal.signal(signum, self._handler) for signum in (*STOPS, signal.SIGHUP)}
        self._thread.start()

    def _handler(self, signum, _frame) -> None:
        with contextlib.suppress(OSError):  # a full pipe already holds signals to act on
            os.write(self._w, bytes([signum]))

    def _run(self) -> None:
        while True:
            try:
                got = set(os.read(self._r, 256))
            except OSError:
                return
            if not got:
                return
            stops = [signum for signum in STOPS if signum in got]
            if stops and not self.stopping:
                self.stopping = True
                try:
                    self.on_stop(stops[0])
                finally:
                    self.stopped.set()
            elif signal.SIGHUP in got and not self.stopping:
                try:
                    self.on_hup()
                except Exception:  # a failed reload must not end signal handling
                    log.exception("SIGHUP handling failed")

    def close(self) -> None:
        for signum, handler in getattr(self, "_before", {}).items():
            signal.signal(signum, handler)
        with contextlib.suppress(OSError):
            os.close(self._w)
