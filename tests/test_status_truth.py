"""Issue 18: ``status`` fails whenever a buyer is or will be waiting (the receiver is down,
Monetizze's key is wrong, a paid buyer waits for line or email), and only then (the first
minute under systemd is not an outage)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from freezegun import freeze_time
from support.install import CHAVE, FIXTURES, wait_for, write_install
from support.postbacks import deliver, payload
from support.receiver import BASE_TOML, install_with, self_signed_certificate
from support.serve import free_port
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import parse_iso
from iptvsync.config import load_config
from iptvsync.ledger.db import Ledger
from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.marks import KEY_REFUSED
from iptvsync.ops.doctor import check_secrets
from iptvsync.ops.health import health

_register()
T0 = "2026-11-20T18:00:00Z"
KEY_PROBLEM = "a Monetizze postback was refused: wrong chave_unica"


def invoke(install, *args, env=None):
    return CliRunner().invoke(app, ["--config", str(install), *map(str, args)], env=env, catch_exceptions=False)


def problems(cfg) -> list[str]:
    return health(cfg)["problems"]


def receiver_problems(cfg) -> list[str]:
    return [p for p in problems(cfg) if "receiver" in p]


def monetizze_body(chave: str) -> bytes:
    """A real-shaped postback (the approved first charge fixture) carrying ``chave``."""
    data = json.loads((FIXTURES / "monetizze" / "approved-first-charge.json").read_text("utf-8"))
    data["chave_unica"] = chave
    return build_form(data)


# --- 1. the receiver answers ------------------------------------------------------------------

def test_status_fails_when_nothing_answers_at_the_receivers_address(tmp_path):
    port = free_port()
    install = install_with(tmp_path, receiver=f"port = {port}\n").read_text().replace("port = 0\n", "")
    config = write_install(tmp_path / "down", install)
    result = invoke(config, "status")
    assert result.exit_code == 1
    assert f"the receiver does not answer at http://127.0.0.1:{port}/healthz (nothing listens there)" in result.output


def test_status_probes_the_running_receiver_on_its_configured_port(tmp_path, start):
    port = free_port()
    config = write_install(tmp_path / "up", BASE_TOML.replace("port = 0", f"port = {port}"))
    start(config, "--port", str(port))
    assert receiver_problems(load_config(config)) == []
    assert invoke(config, "status").exit_code == 0


def test_status_probes_a_tls_receiver_over_tls(tmp_path, start):
    port = free_port()
    cert, key = self_signed_certificate(tmp_path)
    config = write_install(tmp_path / "tls", BASE_TOML.replace("port = 0", f'port = {port}\ncertfile = "{cert}"\n'
                                                                            f'keyfile = "{key}"'))
    cfg = load_config(config)
    assert "https://127.0.0.1" in receiver_problems(cfg)[0]
    start(config, "--port", str(port))
    assert receiver_problems(cfg) == []


def test_status_probes_through_the_configured_receiver_url(tmp_path, start):
    """[status] receiver_url: e.g. the public address, so a proxy answering 502 is seen too."""
    config = write_install(tmp_path / "i", BASE_TOML)
    receiver = start(config)
    env = {"IPTVSYNC_STATUS_RECEIVER_URL": receiver.url}
    assert receiver_problems(load_config(config, environ=env)) == []
    assert invoke(config, "status", env=env).exit_code == 0
    env = {"IPTVSYNC_STATUS_RECEIVER_URL": receiver.url + "/nowhere"}
    [problem] = receiver_problems(load_config(config, environ=env))
    assert f"the receiver at {receiver.url}/nowhere/healthz answers HTTP 404 (unknown path): is [status]" \
           " receiver_url right?" in problem


class Canned(BaseHTTPRequestHandler):
    """Answers every GET with the class's canned status, Server header and body."""
    answer: tuple[int, str, bytes] = (200, "", b"")

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, server, body = self.answer
        self.send_response_only(status)
        if server:
            self.send_header("Server", server)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering(tmp_path):
    """``answering(status, server, body)``: an install whose status probe reaches a loopback server
    giving that answer; returns its receiver problem."""
    servers = []

    def _answer(status: int, server: str, body: bytes) -> str:
        handler = type("Handler", (Canned,), {"answer": (status, server, body)})
        servers.append(ThreadingHTTPServer(("127.0.0.1", 0), handler))
        threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{servers[-1].server_address[1]}"
        config = write_install(tmp_path / f"i{len(servers)}", BASE_TOML)
        [problem] = receiver_problems(load_config(config, environ={"IPTVSYNC_STATUS_RECEIVER_URL": url}))
        return problem.replace(url, "URL")

    yield _answer
    for server in servers:
        server.shutdown()
        server.server_close()


# what the receiver says while its ledger cannot commit (receiver/app.py, handle: /healthz); what
# the shipped proxies answer to a /healthz from outside 127.0.0.1 (deploy/caddy/Caddyfile
# `respond @remote 403`: empty body; deploy/nginx/iptvsync.conf `deny all`: nginx's HTML page,
# seen for real in tests/test_deploy_proxy.py) and when the receiver is down (502)
@pytest.mark.parametrize(("answer", "said"), [
    ((503, "iptvsync", b'{"error": "ledger cannot commit: database or disk is full"}'),
     "the receiver at URL/healthz answers HTTP 503 (ledger cannot commit: database or disk is full): postbacks"
     " are refused meanwhile; see journalctl -u iptvsync-serve"),
    ((503, "nginx", b'{"error": ""}'),  # the receiver's answer through nginx, which hides its Server header
     "the receiver at URL/healthz answers HTTP 503: postbacks are refused meanwhile"),
    ((403, "Caddy", b""),
     "URL/healthz answers HTTP 403 from Caddy, not the receiver: a proxy refuses the probe (the shipped Caddy"
     " and nginx files answer /healthz to 127.0.0.1 only): leave [status] receiver_url empty"),
    ((403, "nginx", b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n</html>\r\n"),
     "URL/healthz answers HTTP 403 from nginx, not the receiver: a proxy refuses the probe"),
    ((502, "", b"<html>Bad Gateway</html>"),
     "URL/healthz answers HTTP 502, not the receiver: a proxy cannot reach the receiver: is `serve` running?"
     " (systemctl status iptvsync-serve)"),
    ((301, "nginx", b""),
     "URL/healthz answers HTTP 301 from nginx, not the receiver: something other than the receiver answers"
     " there: check [status] receiver_url"),
], ids=["receiver-503", "receiver-503-via-nginx", "caddy-403", "nginx-403", "proxy-502", "redirect"])
def test_status_says_who_answered_the_probe_and_where_to_look(answering, answer, said):
    problem = answering(*answer)
    assert said in problem
    assert "()" not in problem
    if answer[2][:1] != b"{":  # a proxy's answer does not send the operator to the receiver's log
        assert "journalctl -u iptvsync-serve" not in problem


# --- 2. a wrong chave_unica ---------------------------------------------------------------------

def test_one_refused_monetizze_postback_fails_status_until_one_is_accepted(tmp_path, start):
    config = write_install(tmp_path / "i", BASE_TOML)
    receiver = start(config)
    env = {"IPTVSYNC_STATUS_RECEIVER_URL": receiver.url}
    cfg = load_config(config, environ=env)
    assert receiver.post(monetizze_body("what-monetizze-has")).status_code == 403
    assert [r["reason"] for r in wait_for(receiver.rejections, "the refusal counted")] == [KEY_REFUSED]
    result = invoke(config, "status", env=env)
    assert result.exit_code == 1 and KEY_PROBLEM in result.output
    assert "what-monetizze-has" not in result.output
    [row] = [r for r in check_secrets(cfg) if r["check"] == "MONETIZZE_CHAVE_UNICA"]
    assert row["status"] == "fail" and KEY_PROBLEM in row["detail"]
    # the operator pastes Monetizze's key: the next real postback is accepted, status is healthy again
    assert receiver.post(monetizze_body(CHAVE)).status_code == 200
    assert not [p for p in problems(cfg) if KEY_PROBLEM in p]


@pytest.mark.parametrize(("body", "content_type"), [
    (json.dumps({"chave_unica": "x", "venda": {"codigo": "1", "status": "Finalizada"}}).encode(), "application/json"),
    (b"chave_unica=wrong&foo=bar", "application/x-www-form-urlencoded"),
], ids=["json-body", "not-monetizzes-fields"])
def test_a_refusal_not_shaped_like_monetizze_is_only_counted(tmp_path, start, body, content_type):
    config = write_install(tmp_path / "i", BASE_TOML)
    receiver = start(config)
    assert receiver.post(body, content_type).status_code == 403
    assert [r["reason"] for r in wait_for(receiver.rejections, "the refusal counted")] == [
        "chave_unica missing or wrong"]
    cfg = load_config(config, environ={"IPTVSYNC_STATUS_RECEIVER_URL": receiver.url})
    assert not [p for p in problems(cfg) if KEY_PROBLEM in p]


def test_simulate_with_our_own_key_does_not_prove_the_key(tmp_path, start):
    """`simulate --live` posts the key in .env: only a postback from Monetizze proves it is theirs."""
    config = write_install(tmp_path / "i", BASE_TOML)
    receiver = start(config)
    cfg = load_config(config)
    [row] = [r for r in check_secrets(cfg) if r["check"] == "MONETIZZE_CHAVE_UNICA"]
    assert row["status"] == "warn" and "never accepted a real postback yet" in row["detail"]
    sim = invoke(config, "simulate", "purchase", "--url", receiver.url + "/monetizze/postback/s3cr3tpath")
    assert sim.exit_code == 0, sim.stdout
    [row] = [r for r in check_secrets(cfg) if r["check"] == "MONETIZZE_CHAVE_UNICA"]
    assert row["status"] == "warn"
    assert receiver.post(monetizze_body(CHAVE)).status_code == 200
    [row] = [r for r in check_secrets(cfg) if r["check"] == "MONETIZZE_CHAVE_UNICA"]
    assert row["status"] == "ok"


# --- 3. a paid buyer waiting -------------------------------------------------------------------

def unreachable_panel_install(tmp_path, max_wait: str | None = None):
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "http://127.0.0.1:{free_port()}/x"\n'
                                                  "timeout_s = 1")
    if max_wait:
        toml += f'\n[status]\nmax_wait = "{max_wait}"\n'
    return write_install(tmp_path / "i", toml, env={"PANEL_MAIN_API_KEY": "k" * 32})


@pytest.mark.parametrize("max_wait", [None, "30m"])
def test_a_buyer_waiting_past_max_wait_for_the_line_fails_status(tmp_path, max_wait):
    config = unreachable_panel_install(tmp_path, max_wait)
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2))
    ledger.close()
    waited = timedelta(minutes=30 if max_wait else 10)
    start = parse_iso(T0)
    for moment, late in ((start + timedelta(seconds=30), False), (start + waited - timedelta(minutes=1), False),
                         (start + waited + timedelta(minutes=1), True)):
        with freeze_time(moment):
            invoke(config, "process")  # the panel does not answer: the line stays pending
            found = [p for p in problems(cfg) if "waiting over" in p]
        assert bool(found) is late, (moment, found)
    assert f"1 paid buyer(s) waiting over {max_wait or '10m'} for their line or access email (subscriptions 1;" \
           in found[0]
    assert "the line is not ready" in found[0] and "`iptvsync subs show 1`" in found[0]


@pytest.mark.parametrize(("line", "said"), [
    ('max_wait = "soon"', "[status] max_wait must be a duration such as \"10m\" or \"1h\", got 'soon'"),
    ('receiver_url = "tv.loja.example"', "[status] receiver_url must start with http:// or https://"),
])
def test_status_settings_are_checked(tmp_path, line, said):
    config = write_install(tmp_path / "i", BASE_TOML + f'\n[status]\n{line}\n')
    result = invoke(config, "status")
    assert result.exit_code == 2 and said in result.stderr


# --- 5. judged by the postback's age, not by a run not due yet --------------------------------

def test_the_first_minute_under_systemd_is_not_an_outage(install, cfg):
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2))
    ledger.close()
    with freeze_time(parse_iso(T0) + timedelta(seconds=45)):  # status fires before the first process
        assert not [p for p in problems(cfg) if "process" in p]
    with freeze_time(parse_iso(T0) + timedelta(minutes=4)):  # nothing has run it since it came
        assert [p for p in problems(cfg) if "`process` has not run since it came" in p]
    with freeze_time(parse_iso(T0) + timedelta(minutes=4)):
        invoke(install, "process")
        assert not [p for p in problems(cfg) if "process" in p]


def test_real_lines_with_emails_written_to_files_fail_status(tmp_path):
    """`init`'s maildir backend left in place on a real panel: access emails never reach a buyer."""
    config = unreachable_panel_install(tmp_path)
    found = [p for p in problems(load_config(config)) if "never sent" in p]
    assert found and 'but [email] backend is "maildir"' in found[0]
    dry = write_install(tmp_path / "dry", BASE_TOML)  # the dry-run panel: files are the point
    assert not [p for p in problems(load_config(dry)) if "never sent" in p]
