"""A real ``iptvsync serve`` subprocess on loopback, and small HTTP(S) helpers around it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iptvsync.monetizze.simulate import build_postback

from .install import CHAVE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(config: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of ``iptvsync serve`` for ``config``; SIGTERM and a clean exit at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "iptvsync", "--config", str(config), "serve", *args],
                            cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = None
        for _ in range(200):
            line = proc.stderr.readline()
            assert line, "serve exited before listening"
            match = re.search(r"iptvsync receiver on (https?://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "serve never said where it listens"
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()


def postback_body(email: str = "maria@example.com", product: str = "145388") -> bytes:
    return build_postback("purchase", chave_unica=CHAVE, product=product, email=email)[1]


def post(host: str, port: int, path: str, body: bytes, *, source: str = "127.0.0.1",
         context: ssl.SSLContext | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """One POST from the loopback address ``source`` (any 127.x works on Linux)."""
    kwargs = {"source_address": (source, 0), "timeout": 30}
    conn = (http.client.HTTPSConnection(host, port, context=context, **kwargs) if context
            else http.client.HTTPConnection(host, port, **kwargs))
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                       **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
