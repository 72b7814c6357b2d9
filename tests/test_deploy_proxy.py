"""deploy/nginx/iptvsync.conf and deploy/caddy/Caddyfile, run for real in front of a real
`iptvsync serve` on loopback, with TLS from a certificate made here.

Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3) so the proxy's own
address (127.0.0.1) and the client's differ: the receiver must see the client's address, and
only because the proxy is in trusted_proxies.
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
from support.binaries import need
from support.install import BASE_TOML, wait_for, write_install
from support.receiver import query
from support.serve import free_port, post, postback_body, serving
from support.tls import make_cert

from iptvsync.config import load_config
from iptvsync.ops.watch import probe_receiver

DEPLOY = Path(__file__).parent.parent / "deploy"
PATH = "/monetizze/postback/s3cr3tpath"


def install(tmp_path: Path, *, trusted: bool, allowed: str = "127.0.0.2/32") -> Path:
    toml = BASE_TOML.replace('path = "/monetizze/postback/s3cr3tpath"',
                             f'path = "{PATH}"\nallowed_ips = ["{allowed}"]\n'
                             f'trusted_proxies = [{chr(34) + "127.0.0.1/32" + chr(34) if trusted else ""}]')
    return write_install(tmp_path / "install", toml)


def nginx_conf(prefix: Path, upstream: int, port80: int, port443: int, cert: Path, key: Path) -> Path:
    site = (DEPLOY / "nginx" / "iptvsync.conf").read_text()
    for old, new in [("/etc/letsencrypt/live/DOMAIN/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/DOMAIN/privkey.pem", str(key)),
                     ("/var/log/nginx", str(prefix / "logs")), ("/var/www/html", str(prefix / "www")),
                     ("DOMAIN", "localhost"), ("/monetizze/postback/CHANGE-ME", PATH),
                     ("server 127.0.0.1:8080", f"server 127.0.0.1:{upstream}"),
                     ("listen [::]:80;", ""), ("listen [::]:443 ssl http2;", ""),
                     ("listen 80;", f"listen 127.0.0.1:{port80};"),
                     ("listen 443 ssl http2;", f"listen 127.0.0.1:{port443} ssl http2;")]:
        assert old in site, old
        site = site.replace(old, new)
    return nginx_prefix(prefix, site)


def nginx_prefix(prefix: Path, site: str) -> Path:
    """An nginx of its own under ``prefix`` serving ``site`` (a shipped server block, its paths and
    ports already replaced); returns its nginx.conf."""
    (prefix / "site.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(f"""{'user root root;' if os.geteuid() == 0 else ''}
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
{temp}
    include {prefix}/site.conf;
}}
""")
    for d in ("logs", "tmp", "www"):
        (prefix / d).mkdir(exist_ok=True)
    return conf


@pytest.fixture
def cert(tmp_path):
    return make_cert(tmp_path / "tls")


def client_context(cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_path))


def get(port: int, path: str, *, source: str, context: ssl.SSLContext) -> int:
    """The status of one GET over TLS to the proxy on 127.0.0.1 from the loopback address ``source``."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, source_address=(source, 0), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def healthz_only_from_loopback(config: Path, port443: int, ctx: ssl.SSLContext) -> None:
    """/healthz through the proxy: refused to anyone else (127.0.0.2 stands for the internet and for
    the VPS's own public address), answered on 127.0.0.1, as the guides' `curl --resolve
    DOMAIN:443:127.0.0.1 https://DOMAIN/healthz` check asks it, and as status probes it there."""
    assert get(port443, "/healthz", source="127.0.0.2", context=ctx) == 403
    assert get(port443, "/healthz", source="127.0.0.1", context=ctx) == 200
    cfg = load_config(config, environ={"IPTVSYNC_STATUS_RECEIVER_URL": f"https://127.0.0.1:{port443}"})
    assert probe_receiver(cfg) is None


def remote_of_last_postback(config: Path) -> str:
    return query(config.parent / "iptvsync.db", "SELECT remote_addr FROM inbox ORDER BY id DESC LIMIT 1")[0][
        "remote_addr"]


def stored(config: Path) -> int:
    return query(config.parent / "iptvsync.db", "SELECT COUNT(*) AS n FROM inbox")[0]["n"]


def run_nginx(prefix: Path, conf: Path):
    nginx = need("nginx")
    args = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc


def wait_listening(port: int, proc) -> None:
    import socket

    def up():
        assert proc.poll() is None, proc.stderr.read()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, f"a listener on port {port}", timeout=30)


@pytest.mark.parametrize("trusted", [True, False])
def test_nginx_in_front_of_serve(tmp_path, cert, trusted):
    config = install(tmp_path, trusted=trusted)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    with serving(config) as (url, _):
        upstream = int(url.rsplit(":", 1)[1])
        port80, port443 = free_port(), free_port()
        proc = run_nginx(prefix, nginx_conf(prefix, upstream, port80, port443, *cert))
        try:
            wait_listening(port443, proc)
            ctx = client_context(cert[0])
            status, body = post("127.0.0.1", port443, PATH, postback_body(), source="127.0.0.2", context=ctx)
            if trusted:
                # the proxy is trusted: X-Forwarded-For names the client, allowed_ips lets it in
                assert status == 200 and b'"stored"' in body, body
                assert remote_of_last_postback(config) == "127.0.0.2"
                # a client outside allowed_ips, even one claiming an allowed address, is refused
                status, _ = post("127.0.0.1", port443, PATH, postback_body("x@example.com"), source="127.0.0.3",
                                 context=ctx, headers={"X-Forwarded-For": "127.0.0.2"})
                assert status == 403
            else:
                # untrusted proxy: the receiver sees the proxy (127.0.0.1), outside allowed_ips
                assert status == 403
            # plain HTTP is redirected to HTTPS; oversized bodies stop at the proxy
            status, _ = post("127.0.0.1", port80, PATH, b"x")
            assert status == 301
            # ...except certbot's renewal challenge, served from the webroot on port 80
            challenge = prefix / "www" / ".well-known" / "acme-challenge"
            challenge.mkdir(parents=True, exist_ok=True)
            (challenge / "t0ken").write_text("t0ken.proof")
            with urllib.request.urlopen(f"http://127.0.0.1:{port80}/.well-known/acme-challenge/t0ken",
                                        timeout=10) as resp:
                assert resp.read() == b"t0ken.proof"
            status, _ = post("127.0.0.1", port443, PATH, b"a" * 300_000, source="127.0.0.2", context=ctx)
            assert status == 413
            assert stored(config) == (1 if trusted else 0)
            healthz_only_from_loopback(config, port443, ctx)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert PATH.rsplit("/", 1)[1] not in (prefix / "logs" / "iptvsync.access.log").read_text()


def caddyfile(prefix: Path, upstream: int, port443: int, cert: Path, key: Path) -> Path:
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    for old, new in [("\temail YOUR-EMAIL\n", f"\tadmin off\n\tauto_https off\n"
                                                f"\tstorage file_system {prefix}/data\n"),
                     ("DOMAIN {", f"https://127.0.0.1:{port443} {{\n\tbind 127.0.0.1\n\ttls {cert} {key}"),
                     ("/var/log/caddy", str(prefix)), ("/monetizze/postback/CHANGE-ME", PATH),
                     ("# request_buffers 256KiB", "request_buffers 256KiB"),
                     ("127.0.0.1:8080", f"127.0.0.1:{upstream}")]:
        assert old in text, old
        text = text.replace(old, new)
    (prefix / "Caddyfile").write_text(text)
    return prefix / "Caddyfile"


def test_caddy_in_front_of_serve(tmp_path, cert):
    caddy = need("caddy")
    config = install(tmp_path, trusted=True)
    prefix = tmp_path / "caddy"
    prefix.mkdir()
    env = {**os.environ, "HOME": str(prefix), "XDG_DATA_HOME": str(prefix / "data"),
           "XDG_CONFIG_HOME": str(prefix / "config")}
    with serving(config) as (url, _):
        port443 = free_port()
        file = caddyfile(prefix, int(url.rsplit(":", 1)[1]), port443, *cert)
        check = subprocess.run([caddy, "validate", "--config", str(file), "--adapter", "caddyfile"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr[-2000:]
        proc = subprocess.Popen([caddy, "run", "--config", str(file), "--adapter", "caddyfile"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port443, proc)
            ctx = client_context(cert[0])
            status, body = post("127.0.0.1", port443, PATH, postback_body(), source="127.0.0.2", context=ctx)
            assert status == 200 and b'"stored"' in body, body
            assert remote_of_last_postback(config) == "127.0.0.2"
            # Caddy replaces a client-sent X-Forwarded-For: no spoofing an allowed address
            status, _ = post("127.0.0.1", port443, PATH, postback_body("x@example.com"), source="127.0.0.3",
                             context=ctx, headers={"X-Forwarded-For": "127.0.0.2"})
            assert status == 403
            # Caddy's limit and the receiver's own Content-Length check race: whichever refuses
            # first, the answer is 413, or 502 when the receiver closed while Caddy still sent
            status, _ = post("127.0.0.1", port443, PATH, b"a" * 300_000, source="127.0.0.2", context=ctx)
            assert status in (413, 502)
            assert stored(config) == 1
            healthz_only_from_loopback(config, port443, ctx)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert PATH.rsplit("/", 1)[1] not in (prefix / "iptvsync.access.log").read_text()
    shutil.rmtree(prefix / "data", ignore_errors=True)


def test_status_through_nginx_says_the_proxy_answered_not_the_receiver(tmp_path, cert):
    """[status] receiver_url = the public address: nginx sees the VPS's own address, not 127.0.0.1,
    and refuses /healthz. Here `allow 127.0.0.2` stands for that (the probe comes from 127.0.0.1):
    status names nginx, not the receiver's log. A stopped receiver behind nginx is a 502 from nginx."""
    config = install(tmp_path, trusted=True)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port443 = free_port()
    with serving(config) as (url, _):
        conf = nginx_conf(prefix, int(url.rsplit(":", 1)[1]), free_port(), port443, *cert)
        site = prefix / "site.conf"
        assert "allow 127.0.0.1;" in site.read_text()
        site.write_text(site.read_text().replace("allow 127.0.0.1;", "allow 127.0.0.2;"))
    proc = run_nginx(prefix, conf)
    try:
        wait_listening(port443, proc)
        public = f"https://127.0.0.1:{port443}"
        cfg = load_config(config, environ={"IPTVSYNC_STATUS_RECEIVER_URL": public})
        problem = probe_receiver(cfg)  # the receiver is stopped now, and nginx refuses us anyway
        assert problem.startswith(f"{public}/healthz answers HTTP 403 from nginx, not the receiver: a proxy refuses")
        assert "leave [status] receiver_url empty" in problem and "journalctl" not in problem
        site.write_text(site.read_text().replace("allow 127.0.0.2;", "allow 127.0.0.1;"))
        subprocess.run([need("nginx"), "-p", str(prefix), "-c", str(conf), "-s", "reload"], check=True, timeout=30)
        # an old worker may still answer a probe or two with the old `allow` while the reload settles
        seen: list[str] = []

        def reloaded() -> bool:
            seen.append(probe_receiver(cfg) or "")
            return "HTTP 502" in seen[-1]

        wait_for(reloaded, "nginx reloaded", timeout=30)
        assert f"{public}/healthz answers HTTP 502 from nginx, not the receiver: a proxy cannot reach the" \
               " receiver: is `serve` running?" in seen[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_shipped_caddyfile_is_valid_once_the_seller_replaces_its_placeholders(tmp_path):
    """What the guides tell the seller to replace (DOMAIN, YOUR-EMAIL, the postback path) is all
    there is to replace: no made-up admin@DOMAIN mailbox, and `caddy validate` accepts the result."""
    caddy = need("caddy")
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    assert "admin@DOMAIN\n" not in text and "\temail YOUR-EMAIL\n" in text
    for old, new in [("YOUR-EMAIL", "voce@sualoja.com.br"), ("DOMAIN", "tv.sualoja.com.br"),
                     ("/monetizze/postback/CHANGE-ME", PATH), ("/var/log/caddy", str(tmp_path))]:
        assert old in text, old
        text = text.replace(old, new)
    file = tmp_path / "Caddyfile"
    file.write_text(text)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    check = subprocess.run([caddy, "validate", "--config", str(file), "--adapter", "caddyfile"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr[-2000:]
    for guide in (DEPLOY.parent / "docs" / "pt-BR" / "guia-de-instalacao.md", DEPLOY.parent / "docs" / "operations.md"):
        caddy_step = guide.read_text("utf-8").split("cp /opt/iptvsync/deploy/caddy/Caddyfile", 1)[1][:300]
        assert "YOUR-EMAIL" in caddy_step, guide.name
