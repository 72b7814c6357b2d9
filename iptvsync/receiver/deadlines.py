"""Total deadlines for the reads a request thread still does itself (a body too big for the
gate, one sent after ``Expect: 100-continue``): ``Deadlines``."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

log = logging.getLogger("iptvsync.receiver")


class Deadlines:
    """Total deadlines for reading a request's head and body, whatever the client's pace.

    A socket timeout bounds each read, not the request: a client trickling a byte every few
    seconds (slowloris) would hold its request thread forever. A request thread registers the
    connection with its deadline before reading and clears it after; one thread wakes four
    times a second and shuts the reading side of every connection past its deadline (the
    blocked read returns at once; the write side stays open for the 408), then runs
    ``on_tick`` (the server adds request threads there when connections wait for one).
    """

    def __init__(self, on_tick=lambda: None):
        self.on_tick = on_tick
        self._due: dict[object, tuple[float, float]] = {}  # conn -> (deadline, started)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
        self._thread.start()

    def start(self, conn, seconds: float) -> None:
        conn.timed_out = False
        now = time.monotonic()
        with self._lock:
            self._due[conn] = (now + seconds, now)

    def clear(self, conn) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def slow(self, seconds: float) -> int:
        """How many connections have been reading for longer than ``seconds``."""
        since = time.monotonic() - seconds
        with self._lock:
            return sum(1 for _due, started in self._due.values() if started < since)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, (due, _started) in self._due.items() if due <= now]
                for conn in late:
                    del self._due[conn]
            for conn in late:
                conn.timed_out = True
                with contextlib.suppress(OSError):  # the plain socket's: an SSLSocket's would drop TLS
                    socket.socket.shutdown(conn.socket, socket.SHUT_RD)
            try:
                self.on_tick()
            except Exception:  # housekeeping must never end this thread
                log.exception("deadline housekeeping failed")
