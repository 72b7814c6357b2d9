"""A stand-in for a receiver that is up, for tests about `status`'s other checks.

`status` probes the receiver's /healthz (ops/watch.py) and fails when nothing answers. Tests of
other problems that run no `serve` (one holding the ledger would make `restore` and `rekey`
refuse) point the probe here through ``IPTVSYNC_STATUS_RECEIVER_URL``. The probe itself is
tested against a real `serve` in tests/test_status_truth.py.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b'{"result": "ok"}' if self.path.endswith("/healthz") else b'{"error": "not found"}'
        self.send_response(200 if self.path.endswith("/healthz") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HealthyReceiver:
    """``with HealthyReceiver() as url:`` a loopback URL whose /healthz answers 200 ok."""

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
