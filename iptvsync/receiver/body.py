"""Reading a request body within its limits: ``max_body_bytes`` and a total deadline.

cheroot's own readers trust the client: its chunked reader reads a whole declared chunk into
memory before looking at its size (a "64 MiB chunk" cost 64 MiB whatever the body limit), and a
framing error escapes as a bare ``ValueError`` (a 500 and a traceback). ``BodyReader`` is the
WSGI ``wsgi.input`` instead: it refuses a body as soon as it would pass the limit, never buffers
more than the limit, and turns every way a body can go wrong into a ``BodyError`` carrying the
status and reason the receiver answers with.
"""

from __future__ import annotations

import ssl

CRLF = b"\r\n"
MAX_CHUNK_LINE = 1024  # a chunk-size line: hex digits and extensions, nothing near this long
MAX_TRAILER_LINES = 32


class BodyError(Exception):
    """The body cannot be taken: ``status`` and ``reason`` are the answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class BodyReader:
    """``wsgi.input`` for one request: ``length`` bytes, or a chunked body when ``length`` is None.

    ``on_start``/``on_end`` are called around the reading (the server's body deadline);
    ``timed_out()`` says whether that deadline cut the connection, so a cut read is a 408.
    ``done`` is True once the whole body was consumed (else the connection cannot be reused).
    """

    def __init__(self, rfile, length: int | None, limit: int, *, on_start=None, on_end=None,
                 timed_out=lambda: False):
        self.rfile, self.length, self.limit = rfile, length, limit
        self.on_start, self.on_end, self.timed_out = on_start, on_end, timed_out
        self.done = length == 0
        self.taken = 0

    def skip_if_here(self) -> None:
        """Consume an unread ``Content-Length`` body already read from the socket (a request the
        app answered without its body, 404/405/403), so a pipelined next request is served."""
        if self.done or self.length is None or self.length > self.limit:
            return
        held = getattr(self.rfile, "_read_buf", b"")
        here = len(held) - getattr(self.rfile, "_read_pos", 0) + len(getattr(self.rfile.raw, "prefix", b""))
        if here >= self.length:
            self.done = len(self.rfile.read(self.length)) == self.length

    def read(self, size: int = -1) -> bytes:
        """The rest of the body (``size`` is an upper bound on what is returned)."""
        if self.done:
            return b""
        if self.on_start:
            self.on_start()
        try:
            data = self._read_known() if self.length is not None else self._read_chunked()
        except BodyError:
            raise
        except TimeoutError:
            raise BodyError(408, "body not received in time") from None
        except (OSError, ssl.SSLError, ValueError, EOFError):
            if self.timed_out():
                raise BodyError(408, "body not received in time") from None
            raise BodyError(400, "incomplete body") from None
        finally:
            if self.on_end:
                self.on_end()
        self.done = True
        return data if size is None or size < 0 else data[:size]

    def _read_known(self) -> bytes:
        if self.length < 0:  # a read of -1 bytes is a read to the end of the stream
            raise BodyError(400, "bad content-length")
        if self.length > self.limit:
            raise BodyError(413, "body too large")
        data = self.rfile.read(self.length)
        if len(data) != self.length:
            raise BodyError(408 if self.timed_out() else 400,
                            "body not received in time" if self.timed_out() else "incomplete body")
        return data

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_CHUNK_LINE)
        if not line:
            raise EOFError("connection closed")
        if not line.endswith(CRLF):
            if self.timed_out():
                raise TimeoutError
            raise BodyError(400, "bad chunked framing")
        return line[:-2]

    def _read_chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                    raise ValueError
                size = int(size_text, 16)
            except ValueError:
                raise BodyError(400, "bad chunked framing") from None
            if size == 0:
                break
            if total + size > self.limit:  # refused before a byte of the chunk is read
                raise BodyError(413, "body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise EOFError("connection closed inside a chunk")
            parts.append(chunk)
            total += size
            if self.rfile.read(2) != CRLF:
                raise BodyError(400, "bad chunked framing")
        for _ in range(MAX_TRAILER_LINES):
            if not self._line():
                return b"".join(parts)
        raise BodyError(400, "bad chunked framing")
