"""A test install (config.toml + .env) on the embedded defaults, and small waiting helpers."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.fernet import Fernet

FIXTURES = Path(__file__).parent.parent / "fixtures"
CHAVE = "0123456789abcdef0123456789abcdef"  # the chave_unica the sample postbacks carry
SECRET_KEY = Fernet.generate_key().decode()

BASE_TOML = """
[ledger]
path = "iptvsync.db"

[receiver]
host = "127.0.0.1"
port = 0
path = "/monetizze/postback/s3cr3tpath"

[panels.main]
kind = "dry-run"

[panels.main.links]
server = "http://tv.example.com:8080"

[products.145388]
name = "IPTV Mensal"
panel = "main"
days = 30
bouquets = [1, 2, 3]

[policy]
grace_days = 3
reminder_days = [3]
max_attempts = 5

[email]
backend = "maildir"
maildir = "mail/"
from = "IPTV Loja <no-reply@loja.example>"
support = "WhatsApp +55 11 90000-0000"
"""

def write_install(directory: Path, toml: str = BASE_TOML, env: dict | None = None, *, ledger: bool = True) -> Path:
    """config.toml + .env in ``directory``; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text(toml, encoding="utf-8")
    values = {"MONETIZZE_CHAVE_UNICA": CHAVE, "IPTVSYNC_SECRET_KEY": SECRET_KEY, **(env or {})}
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    if ledger:
        create_ledger(config)
    return config


def create_ledger(config: Path) -> Path | None:
    """What ``iptvsync init`` does for the ledger (only init creates one): the ledger at the
    config's ``[ledger] path``, migrated. None when the config names none that can be made."""
    import tomllib

    from iptvsync.ledger.db import Ledger

    try:
        path = Path(tomllib.loads(config.read_text("utf-8")).get("ledger", {}).get("path", "iptvsync.db"))
    except (tomllib.TOMLDecodeError, AttributeError, TypeError):
        return None  # a test of a broken config: it never gets as far as the ledger
    path = path if path.is_absolute() else config.parent / path
    if not path.exists():
        Ledger(path, create=True).close()
    return path

def fixture_body(name: str) -> bytes:
    return (FIXTURES / "monetizze" / name).read_bytes()

def wait_for(condition, what: str = "the condition", timeout: float = 60.0):
    """Poll ``condition`` until it returns something truthy, and return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
