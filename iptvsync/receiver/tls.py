"""A renewed certificate without a restart: the receiver's TLS context is swapped in place.

On SIGHUP, or when the certificate or key file changes on disk (checked every
``POLL_S`` seconds: certbot and Caddy replace files, they do not signal us), a new
``SSLContext`` is built from the files and swapped into the running adapter. Connections
already open keep the context they were accepted with, so nothing in flight is dropped; new
handshakes get the new certificate. A pair that does not load (half-written, key not matching)
leaves the old context serving, is logged once, and is retried at the next change (the
watcher does not retry or log again while the files stay as they were; SIGHUP always tries).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("iptvsync.receiver")

POLL_S = 2.0


def _stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)  # follows symlinks: certbot's live/ links point at new archive files
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class CertReloader:
    def __init__(self, adapter, certfile: str | Path, keyfile: str | Path | None):
        """``keyfile`` None: the key is in ``certfile``."""
        self.adapter = adapter
        self.certfile = Path(certfile)
        self.keyfile = Path(keyfile) if keyfile else None
        self._seen = (_stamp(self.certfile), _stamp(self.keyfile))
        self._failed: tuple | None = None  # the files' state a reload last failed on
        self._lock = threading.Lock()
        self.reloads = 0

    def reload(self, why: str) -> bool:
        """Build a context from the files and swap it in; False (old one kept) if they don't load."""
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        with self._lock:
            seen = (_stamp(self.certfile), _stamp(self.keyfile))
            try:
                fresh = BuiltinSSLAdapter(str(self.certfile), str(self.keyfile) if self.keyfile else None)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._failed = seen
                log.error("TLS reload (%s) failed, still serving the previous certificate: %s", why, exc)
                return False
            self.adapter.context = fresh.context
            self.adapter._server_env = fresh._server_env
            self._seen = seen
            self.reloads += 1
        log.info("TLS certificate reloaded (%s) from %s", why, self.certfile)
        return True

    def changed(self) -> bool:
        """The files differ from those loaded and from those a reload last failed on."""
        now = (_stamp(self.certfile), _stamp(self.keyfile))
        return now != self._seen and now != self._failed

    def watch(self, stop: threading.Event, every_s: float = POLL_S) -> None:
        """Reload whenever the files change, until ``stop`` is set."""
        while not stop.wait(every_s):
            if self.changed():
                self.reload("file changed")


def lazy_handshake_adapter():
    """cheroot's TLS adapter with the handshake left out of the accept.

    cheroot shakes hands in its one selector thread, as each connection is accepted: a client
    that connects and says nothing stalled every other connection for a whole socket timeout.
    Here the gate (``receiver/gate.py``) shakes hands without blocking, under the head deadline.
    """
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class LazyHandshakeAdapter(BuiltinSSLAdapter):
        def wrap(self, sock):
            tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            return tls, {"wsgi.url_scheme": "https", "HTTPS": "on"}

    return LazyHandshakeAdapter
