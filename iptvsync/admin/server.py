"""``iptvsync admin serve``: the console on cheroot, a process of its own (never the receiver),
bound to loopback by default, until SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable

from ..config import Config
from ..errors import IptvsyncError

log = logging.getLogger("iptvsync.admin")


class AdminServerError(IptvsyncError):
    """The console cannot listen where it was asked to."""


def make_server(cfg: Config):
    from cheroot import wsgi

    from . import create_app

    app = create_app(cfg)
    server = wsgi.Server((cfg.admin.host, cfg.admin.port), app, numthreads=max(1, cfg.admin.threads),
                         server_name="iptvsync-admin")
    server.timeout = 30
    return server


def serve(cfg: Config, *, on_ready: Callable[[str], None] | None = None) -> None:
    server = make_server(cfg)
    stopper = threading.Thread(target=server.stop, name="stopper", daemon=True)

    def _stop(signum, _frame):
        log.info("signal %d: finishing in-flight requests", signum)
        if stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.prepare()
    except OSError as exc:
        used = f"[Errno {errno.EADDRINUSE}]" in str(exc)
        raise AdminServerError(f"cannot listen on {cfg.admin.host}:{cfg.admin.port} ([admin] host and port, or"
                               f" --host/--port): {'the port is already in use' if used else exc}") from None
    host, port = server.bind_addr[:2]
    url = f"http://{host}:{port}"
    log.info("admin console listening on %s", url)
    if on_ready:
        on_ready(url)
    try:
        server.serve()
    finally:
        if stopper.ident is None:
            server.stop()
        else:
            stopper.join()
