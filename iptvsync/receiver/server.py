"""The receiver's HTTP server: cheroot with TLS, its writer process, and a clean SIGTERM.

``serve`` runs ``ReceiverApp`` (``iptvsync.receiver.app``) until SIGTERM/SIGINT; in-flight
requests finish before the writer drains.
"""

from __future__ import annotations

import errno
import logging
import re
import signal
import socket
import threading
from collections.abc import Callable

from ..config import Config
from ..errors import IptvsyncError
from .app import ReceiverApp
from .tls import CertReloader
from .writer import Writer

log = logging.getLogger("iptvsync.receiver")


#: How long a request thread waits for a kept-alive connection's next request, and how many it
#: serves in a row, before handing the connection back to cheroot's selector (``_server_class``).
KEEPALIVE_WAIT_S = 0.01
KEEPALIVE_MAX_REQUESTS = 100


def _server_class():
    """cheroot's WSGI server, with a busy kept-alive connection served on by its request thread.

    cheroot hands every kept-alive connection back to its one selector thread after each
    request, and that thread must win the GIL back from the request threads to dispatch the
    next one: under load that hand-off, not the work, capped the receiver (bench/README.md).
    Here the request thread first waits up to ``KEEPALIVE_WAIT_S`` for the next request (or
    the close) on the same connection and serves it itself, up to ``KEEPALIVE_MAX_REQUESTS``
    in a row. It queues the connection behind the others instead whenever connections are
    waiting for a thread (no connection can starve the rest), and an idle connection goes back
    to the selector as before.
    """
    import select

    from cheroot import wsgi

    class Server(wsgi.Server):
        def put_conn(self, conn):
            for _ in range(KEEPALIVE_MAX_REQUESTS):
                if not self.ready:
                    break
                if not conn.rfile.has_data():
                    try:
                        ready, _, _ = select.select([conn.socket], [], [], KEEPALIVE_WAIT_S)
                    except (OSError, ValueError):  # closed meanwhile: let cheroot clean up
                        ready = []
                    if not ready:
                        break
                if self.requests.qsize:  # others wait for a thread: take a place in the queue
                    self.process_conn(conn)
                    return
                try:
                    keep_open = conn.communicate()
                except Exception:  # what the pool does with a failed connection: drop it
                    keep_open = False
                if not keep_open:
                    conn.close()
                    return
            super().put_conn(conn)  # idle (the selector watches it) or the server is stopping

    return Server


def make_server(config: Config, *, host: str | None = None, port: int | None = None,
                certfile: str | None = None, keyfile: str | None = None):
    """A ready (not started) cheroot server and its writer; ``ConfigError`` for a missing or
    unloadable certificate (checked before anything starts)."""
    tls = config.tls_files(certfile, keyfile)
    writer = Writer(config.ledger_path, ledger_timeout_s=config.receiver.ledger_timeout_s)
    app = ReceiverApp(config, writer)
    bind = (host or config.receiver.host, port if port is not None else config.receiver.port)
    server = _server_class()(bind, app, numthreads=config.receiver.threads,
                             timeout=config.receiver.request_timeout_s, shutdown_timeout=10,
                             # cheroot's default listen backlog is 5: a burst of new connections beyond
                             # it has SYNs dropped and waits a second or more for the retransmission
                             request_queue_size=socket.SOMAXCONN, server_name="iptvsync")
    if tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        cert, key = tls
        server.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key) if key else None)
        server.cert_reloader = CertReloader(server.ssl_adapter, cert, key)
    return server, writer


class ReceiverError(IptvsyncError):
    """The receiver could not start listening (exit code 1)."""


def _bind_reason(text: str) -> str:
    match = re.search(r"\[Errno (\d+)\] ([^)]*)", text)
    if not match:
        return text
    code, reason = int(match.group(1)), match.group(2)
    if code == errno.EADDRINUSE:
        return "the port is already in use (another `iptvsync serve`, or another program)"
    if code == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; use a higher port behind a proxy)"
    return reason


def serve(config: Config, *, host=None, port=None, certfile=None, keyfile=None,
          on_ready: Callable[[str], None] | None = None,
          background: Callable[[threading.Event], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT; in-flight requests finish, then the writer drains."""
    server, writer = make_server(config, host=host, port=port, certfile=certfile, keyfile=keyfile)
    stop = threading.Event()
    # server.stop() closes the socket, then waits for in-flight requests: it runs off the main
    # thread, and the writer is closed only after it returns, so those requests still commit.
    stopper = threading.Thread(target=server.stop, name="stopper", daemon=True)

    def _stop(signum, _frame):
        log.info("signal %d: finishing in-flight requests", signum)
        stop.set()
        if stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    reloader = getattr(server, "cert_reloader", None)
    if reloader:  # a renewed certificate without a restart (receiver/tls.py)
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reloader.reload("SIGHUP"))
    else:  # `systemctl reload` must not kill a plain-HTTP receiver
        signal.signal(signal.SIGHUP, lambda _signum, _frame: log.info("SIGHUP: no TLS certificate to reload"))
    try:
        server.prepare()
    except OSError as exc:  # cheroot wraps the bind error: "No socket could be created -- (... [Errno 98] ...)"
        writer.close()
        host_port = f"{server.bind_addr[0]}:{server.bind_addr[1]}"
        raise ReceiverError(f"cannot listen on {host_port} ([receiver] host and port, or --host/--port): "
                            f"{_bind_reason(str(exc))}") from None
    if reloader:
        threading.Thread(target=reloader.watch, args=(stop,), name="cert-watch", daemon=True).start()
    bound = server.bind_addr
    scheme = "https" if server.ssl_adapter else "http"
    url = f"{scheme}://{bound[0]}:{bound[1]}"
    log.info("listening on %s (postback path configured, health at /healthz)", url)
    if on_ready:
        on_ready(url)
    worker = None
    if background:
        worker = threading.Thread(target=background, args=(stop,), name="process-every", daemon=True)
        worker.start()
    try:
        server.serve()
    finally:
        stop.set()
        if stopper.ident is None:
            server.stop()
        else:
            stopper.join()
        writer.close()
        if worker:
            worker.join(timeout=30)
