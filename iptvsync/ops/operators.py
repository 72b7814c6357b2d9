"""The admin console's operators: who may log in, with which role, password and TOTP.

Passwords are Argon2id hashes (argon2-cffi's defaults); a TOTP secret is stored encrypted
under ``IPTVSYNC_SECRET_KEY`` like the line passwords, and each TOTP step is accepted once.
Every change is audited with its ``actor``.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..clock import iso, now
from ..config import Config
from ..errors import UsageError
from ..ledger.db import Ledger
from .actor import Actor, resolve

ROLES = ("owner", "support")
LANGUAGES = ("pt-BR", "en")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 10
TOTP_ISSUER = "iptvsync"


class OperatorError(UsageError):
    """No such operator, a bad name, role or password (exit code 2). ``code`` and ``values`` let
    the console say it in the operator's language (``admin/labels.py`` OPERATOR_ERRORS)."""

    def __init__(self, message: str, code: str = "", **values: Any):
        super().__init__(message)
        self.code, self.values = code, values


@lru_cache(maxsize=1)
def _hasher():
    from argon2 import PasswordHasher  # Argon2id with the library's recommended costs

    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so that answer takes as long as a wrong password."""
    return _hasher().hash("no operator has this password")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"the password must have at least {MIN_PASSWORD} characters", "short_password",
                            n=MIN_PASSWORD)
    return _hasher().hash(password)


def get(ledger: Ledger, name: str) -> dict[str, Any]:
    row = ledger.one("SELECT * FROM operators WHERE name = ?", (name,))
    if row is None:
        raise OperatorError(f"no operator {name!r} (see `iptvsync admin user list`)", "no_operator", name=name)
    return row


def by_id(ledger: Ledger, operator_id: int) -> dict[str, Any] | None:
    return ledger.one("SELECT * FROM operators WHERE id = ?", (operator_id,))


def add(ledger: Ledger, name: str, role: str, password: str, *, language: str = "pt-BR",
        actor: Actor | None = None) -> dict[str, Any]:
    if not NAME.match(name):
        raise OperatorError(f"operator names are 1-32 lowercase letters, digits, '.', '_' or '-', got {name!r}",
                            "bad_name", name=name)
    if role not in ROLES:
        raise OperatorError(f"--role must be one of {', '.join(ROLES)}, got {role!r}", "bad_role", role=role)
    if language not in LANGUAGES:
        raise OperatorError(f"--language must be one of {', '.join(LANGUAGES)}, got {language!r}", "bad_language",
                            language=language)
    digest = hash_password(password)
    who, t = resolve(actor), iso(now())
    with ledger.tx() as conn:
        if conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
            raise OperatorError(f"operator {name!r} exists (change its password with `admin user passwd`)",
                                "exists", name=name)
        conn.execute("INSERT INTO operators (name, role, password_hash, language, created_at, updated_at)"
                     " VALUES (:n, :r, :h, :l, :t, :t)", {"n": name, "r": role, "h": digest, "l": language, "t": t})
        ledger.audit("operator.added", actor=who.name, operator=name, role=role, **who.detail())
    return get(ledger, name)


def list_operators(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.query("SELECT o.name, o.role, o.totp_secret_enc IS NOT NULL AS totp, o.language, o.created_at,"
                        " (SELECT COUNT(*) FROM operator_sessions s WHERE s.operator_id = o.id AND s.stage = 'full')"
                        " AS sessions FROM operators o ORDER BY o.name")


def set_password(ledger: Ledger, name: str, password: str, *, actor: Actor | None = None) -> int:
    """A new password; every session of that operator ends. Returns how many ended."""
    digest = hash_password(password)
    op, who = get(ledger, name), resolve(actor)
    with ledger.tx() as conn:
        conn.execute("UPDATE operators SET password_hash = :h, updated_at = :t WHERE id = :id",
                     {"h": digest, "t": iso(now()), "id": op["id"]})
        ended = conn.execute("DELETE FROM operator_sessions WHERE operator_id = ?", (op["id"],)).rowcount
        ledger.audit("operator.password_changed", actor=who.name, operator=name, sessions_ended=ended, **who.detail())
    return ended


def remove(ledger: Ledger, name: str, *, actor: Actor | None = None) -> None:
    op, who = get(ledger, name), resolve(actor)
    with ledger.tx() as conn:
        owners = conn.execute("SELECT COUNT(*) FROM operators WHERE role = 'owner'").fetchone()[0]
        if op["role"] == "owner" and owners == 1:
            raise OperatorError(f"{name!r} is the last owner: add another owner first", "last_owner", name=name)
        conn.execute("DELETE FROM operators WHERE id = ?", (op["id"],))  # its sessions go with it (cascade)
        ledger.audit("operator.removed", actor=who.name, operator=name, **who.detail())


def logout(ledger: Ledger, name: str, *, actor: Actor | None = None) -> int:
    """End every session of ``name``; how many."""
    op, who = get(ledger, name), resolve(actor)
    with ledger.tx() as conn:
        ended = conn.execute("DELETE FROM operator_sessions WHERE operator_id = ?", (op["id"],)).rowcount
        ledger.audit("operator.logged_out", actor=who.name, operator=name, sessions_ended=ended, **who.detail())
    return ended


def enable_totp(ledger: Ledger, cfg: Config, name: str, *, actor: Actor | None = None) -> tuple[str, str]:
    """A fresh TOTP secret for ``name`` (replacing any); returns (secret, otpauth URI) to show once."""
    import pyotp

    from ..credentials import encrypt

    op, who = get(ledger, name), resolve(actor)
    secret = pyotp.random_base32()
    with ledger.tx() as conn:
        conn.execute("UPDATE operators SET totp_secret_enc = :s, totp_last_step = 0, updated_at = :t WHERE id = :id",
                     {"s": encrypt(secret, cfg.secrets.secret_key), "t": iso(now()), "id": op["id"]})
        ledger.audit("operator.totp_enabled", actor=who.name, operator=name, **who.detail())
    return secret, pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)


def disable_totp(ledger: Ledger, name: str, *, actor: Actor | None = None) -> None:
    op, who = get(ledger, name), resolve(actor)
    with ledger.tx() as conn:
        conn.execute("UPDATE operators SET totp_secret_enc = NULL, updated_at = :t WHERE id = :id",
                     {"t": iso(now()), "id": op["id"]})
        ledger.audit("operator.totp_disabled", actor=who.name, operator=name, **who.detail())


def check_password(ledger: Ledger, name: str, password: str) -> dict[str, Any] | None:
    """The operator when ``password`` is theirs, else None. An unknown name costs one Argon2
    verification too, so it cannot be told from a wrong password by the time it takes."""
    from argon2.exceptions import InvalidHashError, VerificationError

    op = ledger.one("SELECT * FROM operators WHERE name = ?", (name,)) if NAME.match(name or "") else None
    try:
        _hasher().verify(op["password_hash"] if op else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return op


def needs_totp(cfg: Config, op: dict[str, Any]) -> bool:
    """Whether the login asks for a code: the operator has TOTP, or is an owner and
    ``[admin] require_totp`` is on (then a login without TOTP set up is refused)."""
    return bool(op["totp_secret_enc"]) or (op["role"] == "owner" and cfg.admin.require_totp)


def check_totp(ledger: Ledger, cfg: Config, operator_id: int, code: str, at: datetime | None = None) -> bool:
    """Whether ``code`` is the operator's current TOTP (one step of clock drift allowed), never
    accepting a step already used: a code seen over a shoulder is worth nothing afterwards."""
    import pyotp

    from ..credentials import decrypt

    op = by_id(ledger, operator_id)
    code = (code or "").strip().replace(" ", "")
    if op is None or not op["totp_secret_enc"] or not (code.isdigit() and len(code) == 6):
        return False
    totp, t = pyotp.TOTP(decrypt(op["totp_secret_enc"], cfg.secrets.secret_key)), at or now()
    step = int(t.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if candidate > op["totp_last_step"] and _same(totp.at(candidate * totp.interval), code):
            with ledger.tx() as conn:  # the step is spent only if no other request spent it first
                spent = conn.execute("UPDATE operators SET totp_last_step = :s WHERE id = :id AND totp_last_step < :s",
                                     {"s": candidate, "id": operator_id}).rowcount
            return spent == 1
    return False


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def exists(ledger: Ledger, name: str) -> bool:
    return ledger.one("SELECT 1 AS x FROM operators WHERE name = ?", (name,)) is not None
