"""The gate: a connection costs a request thread only once its whole request has arrived.

cheroot gives every readable connection a thread, which then blocks on the client until the
request is read: 5,000 idle or trickling connections held 5,000 threads (or waited for them).
Here one thread with a selector owns every connection from its accept (or from the moment a
kept-alive connection becomes readable again) until its request is complete: it shakes TLS
hands without blocking, reads the head within its limits and, when the body is framed
(``Content-Length`` or chunked), the whole body too, up to ``max_body_bytes``, then hands the
connection with the bytes already read to cheroot's request queue. What it refuses it answers itself (414, 431, 408),
counted and logged like every other refusal, without a thread:

- the request line over ``MAX_REQUEST_LINE`` bytes: 414; a header line over
  ``MAX_HEADER_LINE``, more than ``MAX_HEADERS`` headers or a head over ``MAX_HEAD``: 431;
- the head not complete ``header_timeout_s`` after the connection started waiting, or the
  body ``request_timeout_s`` after its head: 408;
- more than ``MAX_WAITING`` connections waiting: the one waiting longest is cut (408);
- more than ``BUDGET`` bytes held by all waiting connections together: the one holding the
  most is cut (408), so slow bodies cost memory within a bound and never a thread.

Anything odd it cannot judge cheaply (a bare LF, a strange framing, ``Expect: 100-continue``,
a body over ``max_body_bytes``, refused 413 there) goes to a request thread as soon as its head is complete,
where cheroot and ``BodyReader`` answer it as before.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time

from cheroot.makefile import StreamWriter

from .head import (
    MAX_HEAD,
    MAX_HEADER_LINE,
    MAX_REQUEST_LINE,
    NO_BYTES,
    PrefixedReader,
    Refusal,
    body_framing,
    check_head,
    chunked_complete,
    has_bytes,
    parse_head,
    strict_head,
    take_buffered,
)

log = logging.getLogger("iptvsync.receiver")

BUDGET = 64 << 20  # bytes all waiting connections may hold together; past it the biggest is cut
MAX_WAITING = 10000  # connections waiting for a whole request; past it the longest waiting is cut
EXPIRE_BATCH = 32  # deadlines handled between two looks at the sockets
LINGER_S = 1.0  # after a refusal, the client's unread bytes are drained this long before the close
READ_SIZE = 65536
REFUSALS_QUEUED = 10000  # refusals waiting to be logged and counted; past it they are only summed
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

_NOT_YET = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _Waiting:
    __slots__ = ("conn", "buf", "due", "head", "framing", "length", "shaken", "linger", "seq", "in_gate",
                 "line_start", "dirty", "counted")

    def __init__(self, conn, buf: bytes, due: float, seq: int):
        self.conn, self.buf, self.due, self.seq = conn, bytearray(buf), due, seq
        self.head = -1
        self.framing, self.length = "", 0
        self.shaken = not isinstance(conn.socket, ssl.SSLSocket) or getattr(conn, "shaken", False)
        self.linger = False
        self.in_gate = False  # registered with the gate (else a request thread's try_now)
        self.line_start = self.buf.rfind(b"\n") + 1  # where the line being received starts
        self.dirty = True  # bytes arrived that the scan has not seen
        self.counted = 0  # bytes of ``buf`` counted in the gate's ``held``


class Gate:
    """The thread that holds connections until their request is complete (see the module)."""

    def __init__(self, server):
        self.server = server
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, READ, None)
        self._incoming: collections.deque = collections.deque()
        self._incoming_lock = threading.Lock()
        self._closed = False  # stopped: what still arrives is closed at once
        self._due: list = []  # heap of (due, seq, waiting)
        self._seq = itertools.count()
        self._count = 0
        self.limit = server.max_body_bytes + MAX_HEAD + 4  # what one waiting connection may hold
        self.held = 0  # bytes held by the connections in the gate (only the gate thread counts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gate", daemon=True)
        # logged and counted on a thread of their own: the gate never waits for a log write or
        # for the writer's socket (a writer stuck in a slow commit stops reading it)
        self._refusals: queue.Queue = queue.Queue(REFUSALS_QUEUED)
        self._counter = threading.Thread(target=self._count_refusals, name="refusals", daemon=True)
        self.uncounted = 0

    @property
    def waiting(self) -> int:
        return self._count

    def start(self) -> None:
        self._thread.start()
        self._counter.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
            with self._incoming_lock:  # accepted while stopping: no request begun, closed
                self._closed = True
                late, self._incoming = list(self._incoming), collections.deque()
            for conn, _prefix in late:
                conn.close()
            with contextlib.suppress(queue.Full):
                self._refusals.put(None, timeout=1)
            self._counter.join(timeout=5)

    def _count_refusals(self) -> None:
        while (refusal := self._refusals.get()) is not None:
            try:
                self.server.wsgi_app.refuse(*refusal)
            except Exception:  # counting must never end this thread
                log.exception("counting a refusal failed")

    def add(self, conn, prefix: bytes = b"") -> None:
        """Hold ``conn`` (from any thread) until its request is complete."""
        self._hold(conn, take_buffered(conn.rfile) + prefix)

    def _hold(self, conn, prefix: bytes) -> None:
        with self._incoming_lock:
            if not self._closed:
                self._incoming.append((conn, prefix))
                self._wake()
                return
        conn.close()

    def try_now(self, conn) -> bool:
        """On a request thread, for a kept-alive connection with bytes ready: read what is there;
        True if a whole request has arrived (``conn`` is ready to serve), else the gate holds it."""
        entry = _Waiting(conn, take_buffered(conn.rfile), time.monotonic() + self.server.header_timeout_s, 0)
        entry.shaken = True
        try:
            conn.socket.setblocking(False)
            done = self._read(entry) and self._complete(entry)
        except Refusal:
            done = False
        except OSError:
            conn.close()
            return False
        if done:
            self._hand_over(entry, queue=False)
            return True
        self._hold(conn, bytes(entry.buf))
        return False

    # --- the gate thread -----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # a wave of deadlines is cut EXPIRE_BATCH at a time, with reads and accepts between
                timeout = max(0.0, min(0.25, self._due[0][0] - time.monotonic())) if self._due else 0.25
                events = self._sel.select(timeout)
                for key, _mask in events:
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                    else:
                        self._step(key.data)
                self._take_incoming()
                if self.held > BUDGET:
                    self._over_budget()
                self._expire(time.monotonic(), EXPIRE_BATCH)
            except Exception:  # the gate must never end while the server runs
                log.exception("gate loop failed")
        self._take_incoming()
        for key in list(self._sel.get_map().values()):  # stopping: requests begun go to threads
            entry = key.data
            if entry is None or entry.conn is None:
                continue
            if entry.buf and not entry.linger:
                self._unregister(entry)
                self._hand_over(entry, queue=True)
            else:
                self._drop(entry)
        self._sel.close()

    def _take_incoming(self) -> None:
        while self._incoming:
            conn, prefix = self._incoming.popleft()
            entry = _Waiting(conn, prefix, time.monotonic() + self.server.header_timeout_s, next(self._seq))
            try:
                conn.socket.setblocking(False)
                self._sel.register(conn.socket, READ, entry)
            except (OSError, ValueError):
                conn.close()
                continue
            self._count += 1
            entry.in_gate = True
            entry.counted = len(entry.buf)
            self.held += entry.counted
            heapq.heappush(self._due, (entry.due, entry.seq, entry))
            if prefix or has_bytes(NO_BYTES, conn.socket):  # bytes no select() would announce
                self._step(entry)
            while self._count > MAX_WAITING and self._due:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        """Past ``MAX_WAITING``: the connection waiting longest is answered 408 and closed at once."""
        while self._due:
            due, _seq, entry = heapq.heappop(self._due)
            if entry.due != due or entry.conn is None:
                continue
            if not entry.linger:
                self._refuse(entry, "408 Request Timeout", "request not received in time")
            self._drop(entry)
            return

    def _expire(self, now: float, limit: int) -> None:
        while self._due and self._due[0][0] <= now and limit > 0:
            due, _seq, entry = heapq.heappop(self._due)
            if entry.due != due or entry.conn is None:
                continue  # moved on (body phase) or gone
            if entry.linger:
                self._drop(entry)
            elif entry.head >= 0:
                self._refuse(entry, "408 Request Timeout", "body not received in time")
            else:
                self._refuse(entry, "408 Request Timeout", "request not received in time")
            limit -= 1

    def _step(self, entry: _Waiting) -> None:
        if entry.conn is None:
            return
        sock = entry.conn.socket
        try:
            if not entry.shaken:
                try:
                    sock.do_handshake()
                except ssl.SSLWantWriteError:
                    self._sel.modify(sock, WRITE, entry)
                    return
                except ssl.SSLWantReadError:
                    self._sel.modify(sock, READ, entry)
                    return
                entry.shaken = entry.conn.shaken = True
                self._sel.modify(sock, READ, entry)
            if entry.linger:
                while sock.recv(READ_SIZE):
                    pass
                self._drop(entry)  # the client closed
                return
            eof = not self._read(entry)
            if eof and not entry.buf:
                self._drop(entry)  # closed without a byte: nothing to answer
            elif self._complete(entry) or (eof and entry.head >= 0):  # a body cut short: BodyReader says so
                self._unregister(entry)
                self._hand_over(entry, queue=True)
            elif eof:  # a head cut short: answered here, not by a request thread (5,000 at once cost one)
                self._refuse(entry, "400 Bad Request", "malformed request")
        except Refusal as refusal:
            self._refuse(entry, refusal.status, refusal.reason)
        except _NOT_YET:
            pass
        except (OSError, ValueError):  # reset, a failed handshake, a plain-HTTP client on TLS
            self._drop(entry)

    def _read(self, entry: _Waiting) -> bool:
        """Read what is there into ``entry.buf``; False at end of stream. Refusal past a limit."""
        sock = entry.conn.socket
        while True:
            try:
                data = sock.recv(max(1, min(READ_SIZE, self.limit + 1 - len(entry.buf))))  # never past the limit
            except _NOT_YET:
                return True
            if not data:
                return False
            entry.buf += data
            if entry.in_gate:
                entry.counted += len(data)
                self.held += len(data)
            # scanned again only when a line ended or one grew past a limit: a head trickled a
            # byte at a time costs O(size) per line, not O(size) per byte
            if b"\n" in data:
                entry.line_start = entry.buf.rfind(b"\n") + 1
                entry.dirty = True
            elif len(entry.buf) - entry.line_start > MAX_HEADER_LINE or len(entry.buf) > MAX_HEAD + 4:
                entry.dirty = True
            if entry.head < 0 and len(entry.buf) > MAX_HEAD + 4 and check_head(entry.buf) < 0:
                raise Refusal("431 Request Header Fields Too Large", "headers too large")
            if len(entry.buf) > self.limit:
                return True  # enough for a thread to take over (and refuse it)

    def _complete(self, entry: _Waiting) -> bool:
        if not entry.dirty and entry.framing != "length":
            return False  # nothing that could complete a head or a chunked body has arrived
        entry.dirty = False
        if entry.head < 0:
            entry.head = check_head(entry.buf)
            if entry.head < 0:
                return False
            head = bytes(entry.buf[:entry.head])
            if head.endswith(b"\r\n\r\n"):  # a bare LF is cheroot's to refuse
                strict_head(head)
            method, target, fields = parse_head(head)
            forwarded = b", ".join(fields.get(b"x-forwarded-for", [])).decode("latin-1")
            entry.conn.body_due = None
            if not self.server.reads_body(method, target, entry.conn.remote_addr, forwarded):
                return True  # the app answers without reading a body (404, 405, 403): no wait for it
            entry.conn.body_due = time.monotonic() + self.server.timeout  # wherever the body is read
            entry.framing, entry.length = body_framing(fields, entry.head, self.limit - MAX_HEAD - 4)
            if entry.framing not in ("length", "chunked") or self._complete_body(entry):
                return True
            if entry.in_gate:  # the body gets its own deadline, as on a request thread
                entry.due = time.monotonic() + self.server.timeout
                heapq.heappush(self._due, (entry.due, entry.seq, entry))
            return False
        return self._complete_body(entry)

    def _complete_body(self, entry: _Waiting) -> bool:
        if len(entry.buf) > self.limit:
            return True
        if entry.framing == "length":
            return len(entry.buf) - entry.head >= entry.length
        if entry.framing == "chunked":
            return chunked_complete(entry.buf[entry.head:], self.limit - MAX_HEAD - 4)
        return True

    def _unregister(self, entry: _Waiting) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(entry.conn.socket)
        self._count -= 1
        self._uncount(entry)

    def _uncount(self, entry: _Waiting) -> None:
        self.held -= entry.counted
        entry.counted = 0

    def _over_budget(self) -> None:
        """Past ``BUDGET`` bytes held: cut the connections holding the most until under it."""
        while self.held > BUDGET:
            biggest = max((key.data for key in self._sel.get_map().values()
                           if key.data is not None and key.data.conn is not None and not key.data.linger),
                          key=lambda entry: entry.counted, default=None)
            if biggest is None or not biggest.counted:
                return
            status = "body not received in time" if biggest.head >= 0 else "request not received in time"
            self._refuse(biggest, "408 Request Timeout", status)

    def _hand_over(self, entry: _Waiting, *, queue: bool) -> None:
        conn = entry.conn
        entry.conn = None
        conn.socket.settimeout(self.server.timeout)
        if isinstance(conn.rfile, PrefixedReader) and not conn.rfile.has_data():  # kept alive: reuse it
            conn.rfile.raw.prefix = memoryview(bytes(entry.buf))
        else:
            conn.rfile = PrefixedReader(conn.socket, bytes(entry.buf))
        if conn.wfile is None:
            conn.wfile = StreamWriter(conn.socket, "wb", conn.wbufsize)
        due = getattr(conn, "body_due", None)
        if due is not None and entry.framing not in ("length", "chunked"):  # its body is read on a thread:
            self.server.deadlines.start(conn, due - time.monotonic())  # the deadline runs while it waits
        if queue:
            self.server.hand_over(conn)

    def _drop(self, entry: _Waiting) -> None:
        if entry.conn is None:
            return
        self._unregister(entry)
        entry.conn.close()
        entry.conn = None

    def _refuse(self, entry: _Waiting, status: str, reason: str) -> None:
        """Answer ``status`` and count it; the client's next bytes are drained for ``LINGER_S``
        (a close with unread bytes would reset the connection before the client reads the answer)."""
        conn = entry.conn
        method, path = b"-", b""
        first = bytes(entry.buf[:MAX_REQUEST_LINE]).lstrip(b"\r\n").split(b"\r\n", 1)[0].split(b" ")
        if len(first) >= 2:
            method, path = first[0][:16], first[1].split(b"?", 1)[0]
        try:
            self._refusals.put_nowait((int(status[:3]), reason, conn.remote_addr,
                                       method.decode("latin-1"), path.decode("latin-1")))
        except queue.Full:
            self.uncounted += 1
            if self.uncounted % 1000 == 1:
                log.warning("refusals arrive faster than they can be logged: %d only summed here", self.uncounted)
        if entry.shaken:
            answer = f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            with contextlib.suppress(*_NOT_YET, OSError, ValueError):
                conn.socket.send(answer)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(conn.socket, socket.SHUT_WR)
        entry.linger = True
        entry.buf = bytearray()
        self._uncount(entry)
        entry.due = time.monotonic() + LINGER_S
        heapq.heappush(self._due, (entry.due, entry.seq, entry))
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.modify(conn.socket, READ, entry)
