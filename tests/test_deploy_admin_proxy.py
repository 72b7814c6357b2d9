"""deploy/caddy/admin.Caddyfile and deploy/nginx/iptvsync-admin.conf run for real in front of a
real `iptvsync admin serve`, with TLS from a certificate made here and ``[admin] public_origin``
set to the proxy's address: the cookies get ``__Host-`` and Secure, a form from that origin logs
in, one claiming another origin is refused, and the audit names the browser's address
(127.0.0.2), not the proxy's, even when the browser sends an X-Forwarded-For of its own."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import ssl
import subprocess
import urllib.parse
from pathlib import Path

from support.admin import PASSWORD, add_operator
from support.binaries import need
from support.console import Console
from support.install import BASE_TOML, write_install
from support.receiver import query
from support.serve import free_port
from support.tls import make_cert
from test_deploy_proxy import nginx_prefix, run_nginx, wait_listening

DEPLOY = Path(__file__).parent.parent / "deploy"


def request(port: int, ctx, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, source_address=("127.0.0.2", 0), timeout=30)
    try:
        data = urllib.parse.urlencode(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={
            **({"Content-Type": "application/x-www-form-urlencoded"} if data else {}), **(headers or {})})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read().decode()
    finally:
        conn.close()


def cookies(headers) -> dict[str, str]:
    return {v.split("=", 1)[0]: v for k, v in headers if k.lower() == "set-cookie"}


def test_caddy_in_front_of_admin_serve(tmp_path):
    from iptvsync.config import load_config

    caddy = need("caddy")
    cert, key = make_cert(tmp_path / "tls")
    port443 = free_port()
    origin = f"https://127.0.0.1:{port443}"
    config = write_install(tmp_path / "install", BASE_TOML + f'\n[admin]\npublic_origin = "{origin}"\n'
                                                             'trusted_proxies = ["127.0.0.1/32"]\n')
    add_operator(load_config(config), "maria", "owner")
    console = Console(config)
    prefix = tmp_path / "caddy"
    prefix.mkdir()
    text = (DEPLOY / "caddy" / "admin.Caddyfile").read_text()
    for old, new in [("ADMIN_DOMAIN {", f"{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {prefix}/data\n}}\n"
                                        f"{origin} {{\n\tbind 127.0.0.1\n\ttls {cert} {key}"),
                     ("/var/log/caddy", str(prefix)), ("127.0.0.1:8081", console.url.split("//", 1)[1])]:
        assert old in text, old
        text = text.replace(old, new)
    (prefix / "Caddyfile").write_text(text)
    env = {**os.environ, "HOME": str(prefix), "XDG_DATA_HOME": str(prefix / "data"),
           "XDG_CONFIG_HOME": str(prefix / "config")}
    proc = subprocess.Popen([caddy, "run", "--config", str(prefix / "Caddyfile"), "--adapter", "caddyfile"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port443, proc)
        session = log_in_through(port443, origin, cert, config)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        console.stop()
    log = (prefix / "iptvsync-admin.access.log").read_text()
    assert session.split(";", 1)[0].split("=", 1)[1] not in log
    shutil.rmtree(prefix / "data", ignore_errors=True)


def log_in_through(port443: int, origin: str, cert: Path, config: Path) -> str:
    """The login as a browser at 127.0.0.2 does it through the proxy; returns the session cookie."""
    ctx = ssl.create_default_context(cafile=str(cert))
    status, headers, page = request(port443, ctx, "GET", "/login")
    assert status == 200
    pre = cookies(headers)["__Host-iptvsync-pre"]
    assert "Secure" in pre and "HttpOnly" in pre and "SameSite=Strict" in pre
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    jar = {"Cookie": pre.split(";", 1)[0]}
    form = {"usuario": "maria", "senha": PASSWORD, "csrf": token}
    refused, _, _ = request(port443, ctx, "POST", "/login", form, {**jar, "Origin": "https://evil.example"})
    assert refused == 403
    # the browser's own X-Forwarded-For is not believed: the proxy replaces it
    status, headers, _ = request(port443, ctx, "POST", "/login", form,
                                 {**jar, "Origin": origin, "X-Forwarded-For": "6.6.6.6"})
    assert status == 303
    session = cookies(headers)["__Host-iptvsync-session"]
    assert "Secure" in session and dict(headers)["Strict-Transport-Security"].startswith("max-age")
    status, _, page = request(port443, ctx, "GET", "/", headers={"Cookie": session.split(";", 1)[0]})
    assert status == 200 and "Painel" in page
    rows = query(config.parent / "iptvsync.db", "SELECT detail FROM audit WHERE action = 'admin.login'")
    assert '"client": "127.0.0.2"' in rows[0]["detail"]
    return session


def test_nginx_in_front_of_admin_serve(tmp_path):
    from iptvsync.config import load_config

    cert, key = make_cert(tmp_path / "tls")
    port80, port443 = free_port(), free_port()
    origin = f"https://127.0.0.1:{port443}"
    config = write_install(tmp_path / "install", BASE_TOML + f'\n[admin]\npublic_origin = "{origin}"\n'
                                                             'trusted_proxies = ["127.0.0.1/32"]\n')
    add_operator(load_config(config), "maria", "owner")
    console = Console(config)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    site = (DEPLOY / "nginx" / "iptvsync-admin.conf").read_text()
    for old, new in [("/etc/letsencrypt/live/ADMIN_DOMAIN/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/ADMIN_DOMAIN/privkey.pem", str(key)),
                     ("/var/www/html", str(prefix / "www")), ("ADMIN_DOMAIN", "127.0.0.1"),
                     ("server 127.0.0.1:8081", f"server {console.url.split('//', 1)[1]}"),
                     ("listen [::]:80;", ""), ("listen [::]:443 ssl http2;", ""),
                     ("listen 80;", f"listen 127.0.0.1:{port80};"),
                     ("listen 443 ssl http2;", f"listen 127.0.0.1:{port443} ssl http2;")]:
        assert old in site, old
        site = site.replace(old, new)
    conf = nginx_prefix(prefix, site)
    proc = run_nginx(prefix, conf)
    try:
        wait_listening(port443, proc)
        log_in_through(port443, origin, cert, config)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        console.stop()
