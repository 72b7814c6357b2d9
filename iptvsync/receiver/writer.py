"""The receiver's ledger writer: a process of its own that commits postbacks in groups.

Why a process and not a thread: the writer's work is a string of short SQLite calls, each of
which releases and retakes the GIL. In the receiver's process, with request threads parsing
postbacks, every retake waits for the GIL to come round again, so a five-row commit that takes
0.6 ms alone took 5 ms there, and the writer capped the receiver (bench/README.md). In its own
process it commits at the disk's pace.

How it works:

* ``Writer`` (in the receiver) starts ``python -m iptvsync.receiver.writer LEDGER SOCKET TIMEOUT``.
  The child opens the ledger, listens on a Unix socket in a private (0700) directory and prints
  ``ready``. Each request thread of the receiver connects once and keeps its connection.
* A thread sends its row and waits for the answer. The child takes whatever rows are waiting on
  all connections, commits them in one ``BEGIN IMMEDIATE`` transaction (``synchronous=FULL``:
  one fsync for the group), then answers each: ``(id, duplicate)``, or the error (the receiver
  answers 503). Rejections are counted in the same transactions and get no answer. A probe
  (``/healthz``) rides a group too: it touches the heartbeat row, so its answer says whether the
  ledger can commit right now (a full disk).
* One postback never fails the others. A row whose parsed values cannot be stored is stored as
  its bare body (``inbox.evidence_only``); one that cannot be stored even so is left out, the
  group committed without it, and only it gets the error. An error of the ledger itself (disk
  full, locked) fails the whole group: nothing of it is stored, every row gets the error.
* The child ignores SIGTERM and SIGINT (a Ctrl-C or a stop reaches the whole process group) and
  ends when its standard input closes: when the receiver closes it after the last in-flight
  request, or when the receiver dies, even by SIGKILL. It finishes the group in hand first.
* If the child dies, the receiver answers 503 for the requests it had and starts a new one.
* A receiver and its writer killed together (SIGKILL to the process group) leave their socket
  directory behind; the next ``Writer`` removes such directories, the ones whose socket no
  longer answers.

Frames on the socket: ``!cII`` (kind, JSON length, body length), the JSON, the raw body.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from ..errors import LedgerError
from ..ledger.db import Ledger
from ..ledger.inbox import UnstorableRow, count_rejection, prepared, store_rows, touch_heartbeat
from ..ledger.lock import hold_shared, identity, replaced

log = logging.getLogger("iptvsync.receiver")

HEADER = struct.Struct("!cII")
STORE, REJECT, PROBE, OK, ERROR = b"S", b"R", b"P", b"K", b"E"
SOCKET_DIR_PREFIX = "iptvsync-writer-"
#: /healthz asks the writer at most this often; between probes it repeats the last answer.
PROBE_EVERY_S = 1.0
MAX_FRAME = 64 * 1024 * 1024


class LedgerUnavailable(Exception):
    """The row could not be committed; the sender must retry (503)."""


# --- framing ------------------------------------------------------------------------------------

def send_frame(sock: socket.socket, kind: bytes, meta, body: bytes = b"") -> None:
    data = json.dumps(meta, separators=(",", ":")).encode()
    sock.sendall(HEADER.pack(kind, len(data), len(body)) + data + body)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("connection closed")
        got += n
    return bytes(buf)


def read_frame(sock: socket.socket) -> tuple[bytes, object, bytes]:
    kind, meta_len, body_len = HEADER.unpack(_read_exact(sock, HEADER.size))
    if meta_len + body_len > MAX_FRAME:
        raise EOFError("frame too large")
    meta = json.loads(_read_exact(sock, meta_len))
    return kind, meta, _read_exact(sock, body_len) if body_len else b""


# --- the writer process -------------------------------------------------------------------------

def commit_group(ledger: Ledger, rows: list[dict], rejections: list[list],
                 heartbeat: bool = False) -> list[tuple[int, bool] | str]:
    """Store ``rows`` and count ``rejections`` in one transaction: each row's (id, duplicate),
    or the reason it alone could not be stored (the group is committed without it). Raises
    when nothing could be stored (disk full, locked past the busy timeout)."""
    rows = [prepared(row) for row in rows]  # compressed and parsed before the write lock is taken
    unstorable: dict[int, str] = {}
    while True:
        kept = [index for index in range(len(rows)) if index not in unstorable]
        try:
            with ledger.tx() as conn:
                results = store_rows(conn, [rows[index] for index in kept])
                for status, reason, remote, *flags in rejections:
                    count_rejection(conn, status, reason, remote, on_path=bool(flags and flags[0]))
                if heartbeat:
                    touch_heartbeat(conn, os.getpid())
            break
        except UnstorableRow as exc:  # rolled back: the group again, without that row
            unstorable[kept[exc.index]] = str(exc)
        except Exception:
            # A COMMIT that fails (disk full, I/O error) may leave the transaction open; SQLite
            # asks for an explicit ROLLBACK, else every later BEGIN fails and each postback gets 503.
            if ledger.conn.in_transaction:
                try:
                    ledger.conn.execute("ROLLBACK")
                except Exception:
                    pass
            raise
    stored = dict(zip(kept, results, strict=True))
    return [stored.get(index) or unstorable[index] for index in range(len(rows))]


def run_writer(ledger_path: str, address: str, timeout_s: float) -> int:
    """The child's main loop; returns when standard input closes."""
    try:
        lock_fd = hold_shared(ledger_path)  # `restore` and `rekey` refuse while it is held
        ledger = Ledger(ledger_path, timeout_s=timeout_s)
        opened = identity(ledger_path)
    except Exception as exc:
        log.error("cannot open the ledger: %s", f"{type(exc).__name__}: {exc}")
        return 1
    gone, gone_logged = None, False
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(socket.SOMAXCONN)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "control")
    print("ready", flush=True)
    running = True
    while running:
        stores: list[tuple[socket.socket, dict]] = []
        rejections: list[list] = []
        probes: list[socket.socket] = []
        for key, _ in selector.select():
            if key.data == "control":
                running = False  # the receiver closed our stdin or died: finish this group, end
            elif key.data == "listener":
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ, "client")
            else:
                _take(key.fileobj, selector, stores, rejections, probes)
        if not stores and not rejections and not probes:
            continue
        try:
            if gone is None:  # checked before and after the commit: never acknowledge into a gone file
                gone = replaced(ledger_path, opened)
            if gone is None:
                results = commit_group(ledger, [row for _, row in stores], rejections, heartbeat=bool(probes))
                gone = replaced(ledger_path, opened)
            if gone is not None:
                raise LedgerError(gone)
        except Exception as exc:  # disk full, locked past busy_timeout, read-only file, replaced…
            message = type(exc).__name__ + ": " + str(exc)
            if gone is None or not gone_logged:  # a replaced file: said once, then every answer is 503
                log.error("ledger write failed: %s", message)
                gone_logged = gone is not None
            for conn in [conn for conn, _ in stores] + probes:
                _answer(conn, selector, ERROR, message)
            continue
        for (conn, _), result in zip(stores, results, strict=True):
            if isinstance(result, str):
                log.error("ledger write failed for one postback: %s", result)
                _answer(conn, selector, ERROR, result)
            else:
                _answer(conn, selector, OK, list(result))
        for conn in probes:
            _answer(conn, selector, OK, None)
    ledger.close()
    os.close(lock_fd)
    listener.close()
    with contextlib.suppress(OSError):  # the receiver may be gone (SIGKILL): tidy up for it
        os.unlink(address)
        os.rmdir(os.path.dirname(address))
    return 0


def _take(conn: socket.socket, selector, stores: list, rejections: list, probes: list) -> None:
    """Read the frames waiting on ``conn``: rejections (any number), then at most one row or probe."""
    try:
        while True:
            kind, meta, body = read_frame(conn)
            if kind == REJECT:
                rejections.append(meta)
            elif kind == STORE:
                stores.append((conn, {**meta, "body": body}))
                return  # its thread waits for the answer and sends nothing more
            elif kind == PROBE:
                probes.append(conn)
                return
            if not _readable(conn):
                return
    except (EOFError, OSError, ValueError):
        selector.unregister(conn)
        conn.close()


def _readable(conn: socket.socket) -> bool:
    try:
        return bool(conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def _answer(conn: socket.socket, selector, kind: bytes, meta) -> None:
    try:
        send_frame(conn, kind, meta)
    except OSError:  # that request thread is gone; its row's fate is the group's
        if conn.fileno() != -1:
            selector.unregister(conn)
            conn.close()


def main(argv: list[str] | None = None) -> int:
    ledger_path, address, timeout_s = argv or sys.argv[1:]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_writer(ledger_path, address, float(timeout_s))


# --- the receiver's side ------------------------------------------------------------------------

def _set_os_timeout(sock: socket.socket, seconds: float) -> None:
    """A send/receive timeout kept by the kernel (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket.

    Python's own ``settimeout`` polls before every send and receive: one more system call, and
    one more wait to get the GIL back, per step of every request (it cost a third of the
    receiver's throughput under load).
    """
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:  # a platform with another struct timeval: Python's timeout then
        sock.settimeout(seconds)


def remove_stale_socket_dirs(parent: str | None = None) -> list[str]:
    """Remove this user's writer socket directories whose writer is gone; returns them.

    A directory is stale when its socket refuses connections (nothing listens: the writer
    died without tidying up) or it holds no socket at all; a live writer's is left alone.
    """
    removed = []
    for directory in glob.glob(os.path.join(parent or tempfile.gettempdir(), SOCKET_DIR_PREFIX + "*")):
        try:
            if os.stat(directory).st_uid != os.getuid():
                continue
        except OSError:
            continue
        address = os.path.join(directory, "writer.sock")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(address)
            continue  # a writer answers: alive
        except FileNotFoundError:
            if time.time() - os.stat(directory).st_mtime < 60:
                continue  # a writer that is still starting has not bound its socket yet
        except OSError:
            pass  # refused: nobody listens any more
        finally:
            probe.close()
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


class Writer:
    """The receiver's handle on its writer process: ``store`` a row, count a ``reject``."""

    def __init__(self, ledger_path, *, ledger_timeout_s: float = 10.0):
        self.ledger_path = str(ledger_path)
        self.ledger_timeout_s = ledger_timeout_s
        # A request may wait for the group ahead of it and then its own, each up to the ledger's
        # busy timeout: past that it gets 503 even if its row is committed later (a retry is then
        # a harmless duplicate). Within it, a locked ledger fails the group, so a 503 means "not stored".
        self.commit_timeout_s = 2 * ledger_timeout_s + 5
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._probe_lock = threading.Lock()
        self._probed_at, self._health = -PROBE_EVERY_S, None
        for directory in remove_stale_socket_dirs():
            log.info("removed a stale writer socket directory: %s", directory)
        self._start()

    def _start(self) -> None:
        """Start a writer process and wait for its ``ready`` (LedgerError-like failure: raise)."""
        self._dir = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX)  # mode 0700: only this user connects
        self.address = os.path.join(self._dir, "writer.sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iptvsync.receiver.writer", self.ledger_path, self.address,
             str(self.ledger_timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.wait(timeout=10)
            shutil.rmtree(self._dir, ignore_errors=True)
            raise LedgerError(f"{self.ledger_path}: the ledger writer did not start "
                              f"(exit code {self.proc.returncode}; its error is logged above)")
        self.generation = getattr(self, "generation", 0) + 1
        log.info("ledger writer running (pid %d)", self.proc.pid)

    def _connection(self) -> socket.socket:
        local = self._local
        if getattr(local, "generation", None) != self.generation:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.address)
            _set_os_timeout(sock, self.commit_timeout_s)
            local.sock, local.generation = sock, self.generation
        return local.sock

    def _forget(self) -> None:
        """Drop this thread's connection (out of step after a timeout, or the writer died)."""
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close()
        self._local.generation = None

    def _restart_if_dead(self, generation: int | None) -> bool:
        """Start a new writer if the one of ``generation`` died; True if a newer one runs."""
        with self._lock:
            if not self._closed and self.proc.poll() is not None and self.generation == generation:
                log.error("the ledger writer ended (exit code %s); starting a new one", self.proc.returncode)
                shutil.rmtree(self._dir, ignore_errors=True)
                try:
                    self._start()
                except Exception as exc:
                    log.error("%s", exc)
                    return False
            return self.generation != generation and self.proc.poll() is None

    def store(self, row: dict) -> tuple[int, bool]:
        meta = {k: v for k, v in row.items() if k != "body"}
        inbox_id, duplicate = self._ask(STORE, meta, row["body"])
        return inbox_id, bool(duplicate)

    def health(self) -> str | None:
        """None when the writer runs and the ledger commits; else what is wrong (``/healthz``)."""
        if not self._probe_lock.acquire(blocking=False):
            return self._health  # a probe is under way: the last answer meanwhile
        try:
            if time.monotonic() - self._probed_at >= PROBE_EVERY_S:
                try:
                    self._ask(PROBE, None)
                    self._health = None
                except LedgerUnavailable as exc:
                    self._health = f"ledger cannot commit: {exc}"
                self._probed_at = time.monotonic()
            return self._health
        finally:
            self._probe_lock.release()

    def _ask(self, kind_sent: bytes, meta, body: bytes = b""):
        for attempt in (1, 2):
            generation = self.generation
            try:
                sock = self._connection()
                send_frame(sock, kind_sent, meta, body)
                kind, answer, _ = read_frame(sock)
                break
            except (TimeoutError, BlockingIOError):  # (the kernel's timeout shows as EAGAIN)
                self._forget()
                raise LedgerUnavailable("commit timed out") from None
            except (OSError, EOFError, ValueError) as exc:
                self._forget()
                # The writer died. Whether or not it committed this row, sending it to the new
                # one is safe: the dedupe key makes a second copy a counted duplicate.
                if attempt == 2 or not self._restart_if_dead(generation):
                    raise LedgerUnavailable(f"ledger writer unreachable: {type(exc).__name__}") from None
        if kind != OK:
            raise LedgerUnavailable(str(answer))
        return answer

    def reject(self, status: int, reason: str, remote: str | None, *, on_path: bool = False) -> None:
        """Count a rejection (``on_path``: on the postback path); never waited for, and lost
        only if the writer is down."""
        try:
            send_frame(self._connection(), REJECT, [status, reason, remote, on_path])
        except (OSError, ValueError):
            self._forget()
            self._restart_if_dead(self.generation)

    def close(self) -> None:
        """After the last request: the writer finishes what it holds and ends."""
        with self._lock:
            self._closed = True
        self._forget()
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=self.commit_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
