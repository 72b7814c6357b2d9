"""A crowd of idle and trickling connections, as an attacker holds them (tests and bench).

``Crowd`` opens ``per_source`` connections from each loopback address in ``sources`` (any
127.x.y.z is loopback on Linux), each in one of the ``MODES``, and from one thread sends each
trickling connection its next byte every second. With ``reconnect`` a connection the server cut
is opened again at the next tick (what a real attacker does after a deadline).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

#: idle: connects and says nothing (a mute TLS client on a TLS port); head: a request head, one
#: byte a second; body: a whole head announcing a body, then the body one byte a second;
#: tls-idle / tls-head / tls-body: the same after a completed TLS handshake; bigbody: a head
#: announcing a ``BIG_BODY`` body (over what the old gate gathered), then one byte a second.
MODES = ("idle", "head", "body", "tls-idle", "tls-head", "tls-body", "bigbody")
BODY = 4000
BIG_BODY = 100000


def _script(mode: str, path: str) -> tuple[bytes, bytes]:
    """(sent at once after connecting, trickled a byte a second)."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    if mode.endswith("head"):
        return b"", (head + f"X-Padding: {'a' * 200}\r\n\r\n").encode()
    if mode == "bigbody":
        return (head + f"Content-Length: {BIG_BODY}\r\n\r\n").encode(), b"a" * BIG_BODY
    if mode.endswith("body"):
        return (head + f"Content-Length: {BODY}\r\n\r\n").encode(), b"a" * BODY
    return b"", b""


class _Conn:
    __slots__ = ("sock", "mode", "source", "sent")

    def __init__(self, mode: str, source: str):
        self.sock, self.mode, self.source, self.sent = None, mode, source, 0


class Crowd:
    def __init__(self, port: int, sources: list[str], per_source: int, modes: list[str], *, path: str,
                 context: ssl.SSLContext | None = None, reconnect: bool = False, interval: float = 1.0):
        self.port, self.path, self.context = port, path, context
        self.reconnect, self.interval = reconnect, interval
        self.conns = [_Conn(modes[i % len(modes)], source)
                      for i, source in enumerate(s for s in sources for _ in range(per_source))]
        self.opened = self.cut = self.failed = 0
        self.ticks = 0
        self._stop = threading.Event()
        for conn in self.conns:
            self._open(conn)
        self._thread = threading.Thread(target=self._run, name="crowd", daemon=True)
        self._thread.start()

    def held(self) -> int:
        return sum(conn.sock is not None for conn in self.conns)

    def _open(self, conn: _Conn) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(conn.source, 0))
            if conn.mode.startswith("tls-"):
                sock = self.context.wrap_socket(sock, server_hostname="127.0.0.1")
            first, _trickle = _script(conn.mode, self.path)
            if first:
                sock.sendall(first)
            sock.setblocking(False)
        except OSError:
            self.failed += 1
            conn.sock = None
            return
        conn.sock, conn.sent = sock, 0
        self.opened += 1

    def _closed_by_server(self, sock) -> bool:
        try:
            sock.recv(4096)  # an answer (408) or the close: cut either way
            return True
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.ticks += 1
            for conn in self.conns:
                if self._stop.is_set():
                    return
                if conn.sock is not None and self._closed_by_server(conn.sock):
                    self.cut += 1
                    with contextlib.suppress(OSError):
                        conn.sock.close()
                    conn.sock = None
                if conn.sock is None:
                    if self.reconnect:
                        self._open(conn)
                    continue
                _first, trickle = _script(conn.mode, self.path)
                if conn.sent < len(trickle):
                    with contextlib.suppress(OSError, ssl.SSLError):
                        conn.sent += conn.sock.send(trickle[conn.sent:conn.sent + 1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for conn in self.conns:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.close()
                conn.sock = None


def wait_held(crowd: Crowd, seconds: float = 2.0) -> None:
    """Let the crowd trickle for ``seconds`` (each connection then has bytes in the server)."""
    ticks = crowd.ticks
    deadline = time.monotonic() + seconds + 5 * crowd.interval
    while crowd.ticks < ticks + max(1, int(seconds / crowd.interval)) and time.monotonic() < deadline:
        time.sleep(0.05)


class LoneGate:
    """The receiver's gate on its own, with real sockets and no server: what it refuses
    (``refused``: status, reason, address) and which connections it hands over (``handed``:
    their numbers). ``add(sock, n)`` gives it a connection from 127.0.0.n."""

    def __init__(self):
        from iptvsync.receiver import gate as gate_module
        from iptvsync.receiver.head import NO_BYTES

        self.refused: list[tuple] = []
        self.handed: list[int] = []
        refused, handed = self.refused, self.handed

        class App:
            def refuse(self, status, reason, remote, method="-", path=""):
                refused.append((status, reason, remote))

        class Server:
            header_timeout_s, timeout, wsgi_app, max_body_bytes = 60, 60, App(), 262144

            def reads_body(self, method, target, peer, forwarded):
                return True

            def hand_over(self, conn):
                handed.append(conn.n)

        class Conn:
            wfile, wbufsize = None, 8192

            def __init__(self, sock, n):
                self.socket, self.rfile, self.remote_addr, self.n = sock, NO_BYTES, f"127.0.0.{n}", n

            def close(self):
                self.socket.close()

        self.Conn = Conn
        self.gate = gate_module.Gate(Server())

    def add(self, sock, n: int) -> None:
        self.gate.add(self.Conn(sock, n))
