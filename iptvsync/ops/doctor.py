"""``iptvsync doctor``: is this install able to work? One row per check: ok, warn or fail."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

from ..clock import now
from ..config import Config


def _row(check: str, status: str, detail: str) -> dict:
    return {"check": check, "status": status, "detail": detail}


def check_secrets(cfg: Config) -> list[dict]:
    s = cfg.secrets
    rows = [_row("MONETIZZE_CHAVE_UNICA", "ok" if s.chave_unica else "fail",
                 "set" if s.chave_unica else f"missing in environment or {cfg.env_path}"),
            _row("IPTVSYNC_SECRET_KEY", "ok" if s.secret_key else "fail",
                 "set" if s.secret_key else f"missing in environment or {cfg.env_path}")]
    if s.chave_unica and cfg.ledger_path.exists():  # a key of our own making accepts only `simulate`
        rows[0] = _row("MONETIZZE_CHAVE_UNICA", *_key_verdict(cfg))
    if not s.consumer_key:
        rows.append(_row("MONETIZZE_CONSUMER_KEY", "warn", "not set: `reconcile monetizze` cannot read the API"))
        return rows
    from ..errors import MonetizzeApiError
    from ..monetizze.api import MonetizzeApi

    try:
        MonetizzeApi(cfg.monetizze.api_url, s.consumer_key).new_token()
        rows.append(_row("MONETIZZE_CONSUMER_KEY", "ok", "the API issued a token"))
    except MonetizzeApiError as exc:
        rows.append(_row("MONETIZZE_CONSUMER_KEY", "fail", str(exc)))
    return rows


#: The newest subscriptions whose passwords doctor tries with the keyring (``status`` tries fewer).
DOCTOR_KEY_SAMPLE = 1000
def _key_verdict(cfg: Config) -> tuple[str, str]:
    from ..ledger.db import Ledger
    from .watch import key_verdict

    ledger = Ledger(cfg.ledger_path, migrate=False)
    try:
        return key_verdict(ledger.conn, now())
    finally:
        ledger.close()


def check_ledger(cfg: Config) -> list[dict]:
    from ..ledger.db import Ledger

    path = cfg.ledger_path
    if not path.exists():
        from ..ledger.db import LedgerMissing

        return [_row("ledger", "fail", str(LedgerMissing(path)))]  # status's words: a typo is not "run init"
    from .health import key_check

    ledger = Ledger(path, migrate=False)
    try:
        pending = ledger.pending_migrations()
        count, broken = ledger.verify_audit(incremental=True)
        keys = key_check(ledger, cfg, sample=DOCTOR_KEY_SAMPLE)
    finally:
        ledger.close()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return [
        _row("stored passwords", "fail" if keys else "ok", keys or "open with this install's keys"),
        _row("ledger", "warn" if pending else "ok",
             f"{len(pending)} migration(s) pending: run `iptvsync init`" if pending else f"{path}"),
        _row("ledger permissions", "ok" if not mode & 0o077 else "warn", f"{oct(mode)} (0600 expected)"),
        _row("audit chain", "fail" if broken else "ok", f"broken at row {broken}" if broken else f"{count} rows"),
    ]


def check_panels(cfg: Config) -> list[dict]:
    """Per panel: key accepted, the API user's timezone (informational: expiries go as
    ``@<unix>``), outputs, package durations, line cache, credits; then a buyer's login."""
    from ..engine.runner import build_panels
    from ..errors import PanelError

    rows = []
    seen: dict[str, tuple[str, str, float | None]] = {}
    for name, panel in build_panels(cfg).items():
        if not panel.caps.real:
            rows.append(_row(f"panel {name}", "warn", f"{panel.kind}: no real line is created"))
            seen[name] = ("warn", rows[-1]["detail"], None)
            continue
        try:
            facts = panel.health() or {}
        except PanelError as exc:
            rows.append(_row(f"panel {name}", "fail", str(exc)))
            seen[name] = ("fail", str(exc), None)
            continue
        problem = facts.pop("problem", None)  # the adapter's refusal, with its fix
        detail = ", ".join(f"{k}={v}" for k, v in facts.items() if k != "ok") or "reachable, key accepted"
        status = "ok"
        if problem:
            status, detail = "fail", str(problem)
        credits = facts.get("credits") if panel.caps.has_credits else None
        if panel.caps.has_credits and float(credits or 0) < 1:
            status, detail = "warn", f"{detail}: no credits left, new lines will fail"
        elif credits is not None and float(credits) <= cfg.panels[name].low_credits and status == "ok":
            status, detail = "warn", f"{detail}: low credits (low_credits = {cfg.panels[name].low_credits})"
        rows.append(_row(f"panel {name}", status, detail))
        seen[name] = (status, detail, credits)
        if panel.caps.has_player_api:
            rows.append(check_player_login(cfg, name))
    _remember(cfg, seen)
    return rows


def _remember(cfg: Config, seen: dict[str, tuple[str, str, float | None]]) -> None:
    """Keep each panel's verdict and credits in ``panel_state`` for the Painel (no ledger yet, or
    a restore running: nothing is kept, the check itself still answers)."""
    from ..clock import iso
    from ..errors import IptvsyncError
    from ..ledger.db import Ledger, require_ledger
    from ..ledger.lock import shared

    try:
        require_ledger(cfg.ledger_path)
        with shared(cfg.ledger_path):
            ledger = Ledger(cfg.ledger_path)
            try:
                with ledger.tx() as conn:
                    conn.executemany(
                        "INSERT INTO panel_state (panel, status, detail, credits, checked_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (panel) DO UPDATE SET status = excluded.status,"
                        " detail = excluded.detail, credits = excluded.credits, checked_at = excluded.checked_at",
                        [(name, status, detail[:300], credits, iso(now()))
                         for name, (status, detail, credits) in seen.items()])
            finally:
                ledger.close()
    except IptvsyncError:
        return


def check_player_login(cfg: Config, panel: str) -> dict:
    """Log in as a buyer's app would, with the newest line this panel verified, through
    ``player_api.php`` on the server the emails show (``[panels.<name>.links] server``)."""
    from ..credentials import decrypt
    from ..ledger.db import Ledger
    from ..ledger.queue import SyncStatus
    from ..panels.player_api import player_login

    check = f"panel {panel} player"
    if not cfg.ledger_path.exists() or not cfg.secrets.secret_key:
        return _row(check, "warn", "no ledger or IPTVSYNC_SECRET_KEY: no line to log in with")
    ledger = Ledger(cfg.ledger_path, migrate=False)
    try:
        sub = ledger.one("SELECT id, username, password_enc FROM subscriptions WHERE panel = :panel"
                         " AND sync_status = :status AND applied_enabled = 1 AND password_enc IS NOT NULL"
                         " ORDER BY applied_at DESC LIMIT 1", {"panel": panel, "status": SyncStatus.SYNCED})
    finally:
        ledger.close()
    if sub is None:
        return _row(check, "ok", "no enabled line synced yet: nothing to log in with")
    try:
        password = decrypt(sub["password_enc"], cfg.keyring)
    except Exception:  # a key that does not open this ledger's passwords
        return _row(check, "warn", f"subscription {sub['id']}: password does not decrypt with this key")
    server = cfg.panels[panel].links.server
    login = player_login(server, sub["username"], password, timeout_s=cfg.panels[panel].timeout_s)
    where = f"subscription {sub['id']} via {server}"
    return _row(check, "ok" if login.playable else "warn", f"{where}: {login.detail}")


def check_email(cfg: Config) -> list[dict]:
    from ..errors import MailError
    from ..mail.render import KINDS, render, sample_context

    rows = []
    templates = cfg.resolve(cfg.email.templates_dir) if cfg.email.templates_dir else None
    try:
        for kind in KINDS:
            render(kind, sample_context(kind), cfg.email.language, templates)
        rows.append(_row("email templates", "ok", f"all {len(KINDS)} kinds render in {cfg.email.language}"))
    except Exception as exc:  # a broken override
        rows.append(_row("email templates", "fail", f"{type(exc).__name__}: {exc}"))
    if cfg.email.backend == "maildir":
        folder = cfg.resolve(cfg.email.maildir)
        rows.append(_row("email backend", "warn", f"maildir: emails are written to {folder}, not sent"))
        return rows
    from ..engine.mail_stage import make_backend

    try:
        make_backend(cfg).check()
        where = f"SMTP {cfg.email.smtp_host}:{cfg.email.smtp_port}"
        if cfg.secrets.smtp_username:
            rows.append(_row("email backend", "ok", f"{where} login ok"))
        else:  # nothing was logged into: say so, most providers refuse to relay then
            rows.append(_row("email backend", "warn", f"{where} connected; no login tried (SMTP_USERNAME is not"
                             " set): most providers refuse to relay without one"))
    except MailError as exc:
        rows.append(_row("email backend", "fail", str(exc)))
    return rows


def check_tls(cfg: Config) -> list[dict]:
    if not cfg.receiver.certfile:
        return [_row("receiver TLS", "warn", "plain HTTP: put it behind a TLS proxy or set certfile/keyfile")]
    from cryptography import x509

    from ..errors import ConfigError

    try:
        path = cfg.tls_files()[0]
    except ConfigError as exc:
        return [_row("receiver TLS", "fail", f"`serve` will not start: {exc}")]
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [_row("receiver TLS", "fail", f"{path}: {exc}")]
    left = cert.not_valid_after_utc - now()
    if left < timedelta(0):
        return [_row("receiver TLS", "fail", f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")]
    status = "warn" if left < timedelta(days=14) else "ok"
    return [_row("receiver TLS", status, f"certificate valid until {cert.not_valid_after_utc:%Y-%m-%d}")]


#: values of the shipped config.example.toml that mean "not filled in yet": buyers would see them
EXAMPLE_VALUES = ("tv.example.com", "no-reply@example.com", "90000-0000")


def check_example_values(cfg: Config) -> list[dict]:
    found = [f"[panels.{name}.links] server" for name, p in cfg.panels.items() if EXAMPLE_VALUES[0] in p.links.server]
    found += [f"[email] {key}" for key, value in (("from", cfg.email.from_addr), ("support", cfg.email.support))
              if any(example in value for example in EXAMPLE_VALUES)]
    if not found:
        return [_row("example values", "ok", "none left in the config")]
    return [_row("example values", "warn", f"still the example's, buyers would see them: {', '.join(found)}")]


def doctor(cfg: Config) -> list[dict]:
    rows = [_row("config", "ok", str(cfg.path))]
    from .notify import check_whatsapp

    for check in (check_example_values, check_secrets, check_ledger, check_panels, check_email, check_tls,
                  check_whatsapp):
        rows.extend(check(cfg))
    return rows
