"""``rekey``: re-encrypt the stored line passwords under a new ``IPTVSYNC_SECRET_KEY``.

Crash-safe in three steps, each of which a second run recognises and finishes:

1. the new key is written to ``.env`` as ``IPTVSYNC_NEW_SECRET_KEY`` (pending), atomically;
2. passwords are re-encrypted in small transactions; a row that the old key no longer opens
   must open with the new one (it was done by an earlier, interrupted run);
3. when every row opens with the new key, ``.env`` is rewritten with it as
   ``IPTVSYNC_SECRET_KEY`` and the pending line removed, atomically.

``process`` (the only stage that decrypts) is kept out by holding its lock throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..config import Config
from ..credentials import _fernet
from ..engine.runner import process_lock
from ..errors import ConfigError, IptvsyncError
from ..fsutil import write_atomically
from ..ledger.db import Ledger

PENDING = "IPTVSYNC_NEW_SECRET_KEY"
CURRENT = "IPTVSYNC_SECRET_KEY"


@dataclass
class RekeyResult:
    reencrypted: int
    already_done: int
    resumed: bool


def read_env_lines(env_path: Path) -> list[str]:
    return env_path.read_text("utf-8").splitlines() if env_path.exists() else []


def env_value(lines: list[str], name: str) -> str | None:
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip("'\"")
    return None


def with_env(lines: list[str], name: str, value: str | None) -> list[str]:
    """``lines`` with ``name`` set to ``value`` (appended when absent) or removed (None)."""
    out, done = [], False
    for line in lines:
        key, sep, _ = line.partition("=")
        if sep and key.strip() == name:
            if value is not None and not done:
                out.append(f"{name}={value}")
                done = True
            continue
        out.append(line)
    if value is not None and not done:
        out.append(f"{name}={value}")
    return out


def _write_env(env_path: Path, lines: list[str]) -> None:
    write_atomically(env_path, ("\n".join(lines) + "\n").encode("utf-8"))  # 0600


def rekey(cfg: Config, *, environ: dict[str, str], batch: int = 200,
          checkpoint: Callable[[str], None] = lambda step: None) -> RekeyResult:
    """Rotate the key in ``cfg.env_path``. ``checkpoint`` is called after each durable step
    (tests use it to stop the run there, as a kill would)."""
    if CURRENT in environ:
        raise ConfigError(f"{CURRENT} is set in the environment, not only in {cfg.env_path}: "
                          "rotate it where it is set (rekey rewrites .env only)")
    lines = read_env_lines(cfg.env_path)
    old_key = env_value(lines, CURRENT)
    if not old_key:
        raise ConfigError(f"{cfg.env_path}: {CURRENT} is not set")
    new_key = env_value(lines, PENDING)
    resumed = new_key is not None
    with process_lock(cfg.ledger_path):
        if new_key is None:
            new_key = Fernet.generate_key().decode()
            _write_env(cfg.env_path, with_env(lines, PENDING, new_key))
            checkpoint("pending key written")
        old, new = _fernet(old_key), _fernet(new_key)
        ledger = Ledger(cfg.ledger_path)
        try:
            reencrypted = already = 0
            last_id = 0
            while True:
                rows = ledger.query("SELECT id, password_enc FROM subscriptions WHERE password_enc IS NOT NULL"
                                    " AND id > :last ORDER BY id LIMIT :n", {"last": last_id, "n": batch})
                if not rows:
                    break
                with ledger.tx() as conn:
                    for row in rows:
                        token = row["password_enc"].encode()
                        try:
                            plain = old.decrypt(token)
                        except InvalidToken:
                            try:
                                new.decrypt(token)
                            except InvalidToken:
                                raise IptvsyncError(f"subscription {row['id']}: its password opens with neither "
                                                    f"the current nor the pending key; nothing changed in "
                                                    f"{cfg.env_path}") from None
                            already += 1
                            continue
                        conn.execute("UPDATE subscriptions SET password_enc = :p WHERE id = :id",
                                     {"p": new.encrypt(plain).decode(), "id": row["id"]})
                        reencrypted += 1
                last_id = rows[-1]["id"]
                checkpoint(f"batch up to {last_id}")
            ledger.audit("secret_key.rotated", reencrypted=reencrypted, already_done=already)
        finally:
            ledger.close()
        lines = read_env_lines(cfg.env_path)
        _write_env(cfg.env_path, with_env(with_env(lines, CURRENT, new_key), PENDING, None))
    return RekeyResult(reencrypted, already, resumed)
