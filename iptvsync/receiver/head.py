"""A request as the gate gathers it (``receiver/gate.py``): the limits of its head, the scan
that says when the head (and a small body) is complete, and the ``rfile`` that gives cheroot
the bytes already read before those still in the socket.

Limits (docs/receiver.md): the request line ``MAX_REQUEST_LINE`` bytes (else 414), each header
line ``MAX_HEADER_LINE``, ``MAX_HEADERS`` header lines and the whole head ``MAX_HEAD`` (else
431); a waiting connection holds at most its head and ``max_body_bytes`` of body (the gate's
``limit``), and all of them together at most the gate's ``BUDGET``.
"""

from __future__ import annotations

import _pyio
import collections
import re
import socket

from cheroot.makefile import StreamReader

MAX_REQUEST_LINE = 8192
MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
MAX_HEAD = 16384
CRLF = b"\r\n"
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # a control character other than HTAB


class _PrefixedIO(socket.SocketIO):
    """A socket's raw stream that first returns bytes already read from it."""

    def __init__(self, sock, prefix: bytes):
        super().__init__(sock, "rb")
        self.prefix = memoryview(prefix)

    def readinto(self, b):
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return super().readinto(b)


class PrefixedReader(StreamReader):
    """cheroot's ``rfile`` for a connection whose first bytes the gate already read."""

    def __init__(self, sock, prefix: bytes, bufsize: int = 8192):
        # StreamReader's own __init__ would wrap the bare socket; its base is _pyio's reader
        _pyio.BufferedReader.__init__(self, _PrefixedIO(sock, prefix), bufsize)
        self.bytes_read = 0


class _NoBytes:
    """A new connection's ``rfile`` until the gate hands it over (cheroot's costs a buffer)."""

    raw = None

    def has_data(self) -> bool:
        return False

    def close(self) -> None:
        pass


NO_BYTES = _NoBytes()


def has_bytes(rfile, sock) -> bool:
    """Whether bytes already read from ``sock`` wait unconsumed: in ``rfile``'s buffer, among
    those the gate read (its prefix, beyond the buffer when a request ended on its boundary),
    or in a TLS session's own buffer; no select() on the socket sees any of them."""
    if rfile.has_data() or getattr(rfile.raw, "prefix", None):
        return True
    pending = getattr(sock, "pending", None)
    return bool(pending and pending())


def take_buffered(rfile) -> bytes:
    """The bytes ``rfile`` read from its socket but nobody has consumed yet (pipelined requests)."""
    data = b""
    if rfile.has_data():
        data = rfile.read(len(rfile._read_buf) - rfile._read_pos)  # from the buffer, never the socket
    prefix = getattr(rfile.raw, "prefix", None)
    if prefix:
        data += bytes(prefix)
        rfile.raw.prefix = memoryview(b"")
    return data


class Refusal(Exception):
    """The head passed a limit: ``status`` (e.g. "414 Request-URI Too Long") and ``reason``."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _head_end(buf: bytes | bytearray) -> int:
    """Offset just past the head's empty line, or -1."""
    start = 2 if buf.startswith(CRLF) else 0  # one leading empty line is ignored (RFC 9112 2.2)
    end = buf.find(b"\r\n\r\n", start)
    if end >= 0:
        return end + 4
    return -1


def check_head(buf: bytes | bytearray) -> int:
    """Check the head in ``buf`` against the limits: -1 while incomplete, else its length.

    Raises ``Refusal`` past a limit; a bare LF counts as complete (cheroot answers it 400)."""
    start = 2 if buf.startswith(CRLF) else 0
    end = _head_end(buf)
    head = buf[start:end] if end >= 0 else buf[start:]
    lines = head.split(b"\n")
    if len(lines[0]) > MAX_REQUEST_LINE:
        raise Refusal("414 Request-URI Too Long", "request line too long")
    if any(len(line) > MAX_HEADER_LINE for line in lines[1:]):
        raise Refusal("431 Request Header Fields Too Large", "header line too long")
    if len(lines) - 3 > MAX_HEADERS:  # the request line, the empty line, the last split
        raise Refusal("431 Request Header Fields Too Large", "too many headers")
    if len(head) > MAX_HEAD:
        raise Refusal("431 Request Header Fields Too Large", "headers too large")
    if end >= 0:
        return end
    if any(not line.endswith(b"\r") for line in lines[:-1]):
        return len(buf)  # a bare LF: cheroot refuses it
    return -1


def strict_head(head: bytes) -> None:
    """Refuse (400) what RFC 9110/9112 forbid and cheroot lets through: a method or a header
    name that is not a token (a space, a control character, an empty name), a control
    character other than HTAB in a value, an obs-fold line, and ``Content-Length`` repeated
    with different values (RFC 9112 6.3; the same value repeated is accepted)."""
    lines = head.lstrip(CRLF).split(CRLF)
    if not _TOKEN.fullmatch(lines[0].split(b" ", 1)[0]):
        raise Refusal("400 Bad Request", "malformed request")
    lengths = set()
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise Refusal("400 Bad Request", "malformed request")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise Refusal("400 Bad Request", "malformed request")
        if name.lower() == b"content-length":
            lengths.add(value.strip())
    if len(lengths) > 1:
        raise Refusal("400 Bad Request", "conflicting content-length")


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, list[bytes]]]:
    """(method, request target, {lower-case name: [values]}) of a complete head, leniently:
    cheroot judges it properly on the request thread."""
    lines = head.lstrip(CRLF).split(CRLF)
    first = lines[0].split(b" ")
    fields: dict[bytes, list[bytes]] = collections.defaultdict(list)
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower()].append(value.strip())
    return first[0], first[1] if len(first) > 1 else b"", fields


def body_framing(fields: dict[bytes, list[bytes]], head_size: int, limit: int) -> tuple[str, int]:
    """How the gate may gather the body: ("none", 0), ("length", n), ("chunked", 0), or
    ("thread", 0) for anything it leaves to a request thread (odd framing, Expect, too big)."""
    if fields.get(b"expect"):
        return "thread", 0
    te, cl = fields.get(b"transfer-encoding"), fields.get(b"content-length")
    if te:
        return ("chunked", 0) if te == [b"chunked"] and not cl else ("thread", 0)
    if not cl:
        return "none", 0
    if len(cl) != 1 or not _DIGITS.fullmatch(cl[0]):
        return "thread", 0
    length = int(cl[0])
    return ("length", length) if length + head_size <= limit else ("thread", 0)  # too big: a 413


def chunked_complete(body: bytes | bytearray, limit: int) -> bool:
    """Whether ``body`` holds a whole chunked body (or a framing error a thread will answer)."""
    pos = 0
    while True:
        eol = body.find(CRLF, pos)
        if eol < 0:
            return len(body) - pos > 1024  # a size line that long is an error: let BodyReader say so
        size_text = body[pos:eol].split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            return True
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            break
        if pos + size > limit:
            return True  # BodyReader refuses it or streams it on a thread
        if len(body) < pos + size + 2:
            return False
        pos += size + 2
    while True:  # trailers, up to the empty line
        eol = body.find(CRLF, pos)
        if eol < 0:
            return len(body) - pos > 1024
        if eol == pos:
            return True
        pos = eol + 2
