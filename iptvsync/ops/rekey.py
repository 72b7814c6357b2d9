"""``rekey``: re-encrypt the stored line passwords under a new ``IPTVSYNC_SECRET_KEY``.

Crash-safe in three steps, each of which a second run recognises and finishes:

1. every password is checked to open with the current key or a retired one (else nothing is
   written), then the new key goes into ``.env`` as ``IPTVSYNC_NEW_SECRET_KEY`` (pending);
2. passwords are re-encrypted in small transactions; a row that opens with the pending key was
   done by an earlier, interrupted run;
3. ``.env`` is rewritten with the new key as ``IPTVSYNC_SECRET_KEY``, the old one first in
   ``IPTVSYNC_RETIRED_KEYS`` (a restored older backup still opens) and the pending line removed,
   in one atomic write.

The whole run holds the ledger's lock exclusive (``ledger/lock.py``): it refuses while a receiver
or ``process`` runs, and none starts before it ends. Meanwhile, or after a killed run, every
reader tries the whole keyring (current, pending, retired), so no password is ever unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..config import Config
from ..credentials import _fernet
from ..errors import ConfigError, IptvsyncError
from ..fsutil import write_atomically
from ..ledger.db import Ledger, require_ledger
from ..ledger.lock import exclusive

PENDING = "IPTVSYNC_NEW_SECRET_KEY"
CURRENT = "IPTVSYNC_SECRET_KEY"
RETIRED = "IPTVSYNC_RETIRED_KEYS"


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
    for name in (CURRENT, PENDING, RETIRED):
        if name in environ:
            raise ConfigError(f"{name} is set in the environment, not only in {cfg.env_path}: "
                              "rotate it where it is set (rekey rewrites .env only)")
    require_ledger(cfg.ledger_path)
    with exclusive(cfg.ledger_path, "rekey"):
        lines = read_env_lines(cfg.env_path)
        old_key = env_value(lines, CURRENT)
        if not old_key:
            raise ConfigError(f"{cfg.env_path}: {CURRENT} is not set")
        retired = [k.strip() for k in (env_value(lines, RETIRED) or "").split(",") if k.strip()]
        olds = [_fernet(k) for k in dict.fromkeys([old_key, *retired])]
        new_key = env_value(lines, PENDING)
        resumed = new_key is not None
        ledger = Ledger(cfg.ledger_path)
        try:
            if new_key is None:
                bad = first_unreadable(ledger, olds)
                if bad is not None:
                    raise IptvsyncError(f"subscription {bad}: its password opens with neither {CURRENT} nor any of"
                                        f" {RETIRED} in {cfg.env_path}; nothing changed (add the key that"
                                        f" encrypted it to {RETIRED}, then run rekey again)")
                new_key = Fernet.generate_key().decode()
                _write_env(cfg.env_path, with_env(lines, PENDING, new_key))
                checkpoint("pending key written")
            reencrypted, already = _reencrypt(ledger, olds, _fernet(new_key), batch, checkpoint, cfg.env_path)
            ledger.audit("secret_key.rotated", reencrypted=reencrypted, already_done=already)
        finally:
            ledger.close()
        keep = ",".join(dict.fromkeys(k for k in (old_key, *retired) if k != new_key))
        lines = with_env(with_env(read_env_lines(cfg.env_path), CURRENT, new_key), RETIRED, keep or None)
        _write_env(cfg.env_path, with_env(lines, PENDING, None))
    return RekeyResult(reencrypted, already, resumed)


def first_unreadable(ledger: Ledger, keys: list[Fernet]) -> int | None:
    """The id of the first stored password that none of ``keys`` opens, or None."""
    rows = ledger.conn.execute("SELECT id, password_enc FROM subscriptions WHERE password_enc IS NOT NULL ORDER BY id")
    for sub_id, token in rows:
        if not any(opens(key, token.encode()) for key in keys):
            return sub_id
    return None


def opens(key: Fernet, token: bytes) -> bool:
    try:
        key.decrypt(token)
        return True
    except InvalidToken:
        return False


def _reencrypt(ledger: Ledger, olds: list[Fernet], new: Fernet, batch: int, checkpoint, env_path: Path):
    reencrypted = already = last_id = 0
    while True:
        rows = ledger.query("SELECT id, password_enc FROM subscriptions WHERE password_enc IS NOT NULL"
                            " AND id > :last ORDER BY id LIMIT :n", {"last": last_id, "n": batch})
        if not rows:
            return reencrypted, already
        with ledger.tx() as conn:
            for row in rows:
                token = row["password_enc"].encode()
                if opens(new, token):
                    already += 1
                    continue
                for old in olds:
                    try:
                        plain = old.decrypt(token)
                        break
                    except InvalidToken:
                        continue
                else:
                    raise IptvsyncError(f"subscription {row['id']}: its password opens with no key in {env_path};"
                                        f" the rekey stays pending there: add its key to {RETIRED}, then run"
                                        " rekey again")
                conn.execute("UPDATE subscriptions SET password_enc = :p WHERE id = :id",
                             {"p": new.encrypt(plain).decode(), "id": row["id"]})
                reencrypted += 1
        last_id = rows[-1]["id"]
        checkpoint(f"batch up to {last_id}")
