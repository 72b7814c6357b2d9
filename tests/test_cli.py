"""The command line: help everywhere, init, inbox, backup, audit verify, no secrets in tracebacks."""

from __future__ import annotations

import glob
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
import tomllib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import sqlite_utils
import typer
from cryptography.fernet import Fernet
from dotenv import dotenv_values
from freezegun import freeze_time
from support.install import BASE_TOML, CHAVE, FIXTURES, SECRET_KEY, write_install
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import now
from iptvsync.config import load_config
from iptvsync.engine.apply import apply_inbox
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.inbox import inbox_row, store
from iptvsync.ledger.migrations import migrations
from iptvsync.monetizze.postback import parse
from iptvsync.monetizze.redact import redact
from iptvsync.panels.registry import KINDS

_register()

ROOT = Path(__file__).resolve().parent.parent
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def migration_names() -> list[str]:
    return [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]


def walk(command, path: tuple[str, ...] = ()):
    """(path, command) for the root and every sub-command (Typer vendors its own Click)."""
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


# --- help ----------------------------------------------------------------------------------------------

def test_every_command_has_help_text_and_help_exits_0():
    tree = list(walk(typer.main.get_command(app)))
    paths = {" ".join(p) for p, _ in tree}
    assert {"init", "serve", "backup", "audit verify", "inbox list", "inbox show", "inbox retry",
            "inbox replay"} <= paths
    for path, command in tree:
        assert (command.help or "").strip(), f"`iptvsync {' '.join(path)}` has no help text"
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_no_arguments_shows_help():
    result = invoke()
    assert "Usage" in result.output and "inbox" in result.output


# --- init ----------------------------------------------------------------------------------------------

def test_init_in_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    config, env, ledger = tmp_path / "config.toml", tmp_path / ".env", tmp_path / "iptvsync.db"
    assert f"wrote {config}" in result.output and f"wrote {env}" in result.output
    assert f"created ledger {ledger}" in result.output

    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    secrets = dotenv_values(env)
    assert re.fullmatch(r"[0-9a-f]{32}", secrets["MONETIZZE_CHAVE_UNICA"])
    Fernet(secrets["IPTVSYNC_SECRET_KEY"].encode())  # a usable key
    assert {"MONETIZZE_CONSUMER_KEY", "PANEL_MAIN_API_KEY", "SMTP_USERNAME", "SMTP_PASSWORD"} <= set(secrets)

    # the packaged example with one change: a long random segment in the receiver path
    template = resources.files("iptvsync").joinpath("data/config.example.toml").read_text("utf-8").splitlines()
    written = config.read_text("utf-8").splitlines()
    assert len(written) == len(template)
    changed = [(a, b) for a, b in zip(template, written, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith('path = "/monetizze/postback"')

    from iptvsync.config import load_config

    cfg = load_config(config)
    assert re.fullmatch(r"/monetizze/postback/[A-Za-z0-9_-]{32,}", cfg.receiver.path)
    assert cfg.secrets.chave_unica == secrets["MONETIZZE_CHAVE_UNICA"]
    assert cfg.ledger_path == ledger and stat.S_IMODE(ledger.stat().st_mode) == 0o600
    assert Ledger(ledger, migrate=False).pending_migrations() == []


def test_two_inits_have_different_secrets(tmp_path):
    seen = []
    for name in ("a", "b"):
        config = tmp_path / name / "config.toml"
        assert invoke("--config", config, "init").exit_code == 0
        secrets = dotenv_values(config.parent / ".env")
        path = re.search(r'^path = "(/monetizze/postback/[^"]+)"', config.read_text(), re.MULTILINE)[1]
        seen.append((secrets["MONETIZZE_CHAVE_UNICA"], secrets["IPTVSYNC_SECRET_KEY"], path))
    for first, second in zip(*seen, strict=True):
        assert first != second


def test_second_init_changes_nothing_and_says_so(tmp_path):
    config = tmp_path / "config.toml"
    assert invoke("--config", config, "init").exit_code == 0
    files = [config, tmp_path / ".env", tmp_path / "iptvsync.db"]
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    time.sleep(0.01)  # file-system mtime granularity: let a rewrite show up
    result = invoke("--config", config, "init")
    assert result.exit_code == 0
    assert "nothing to do" in result.output
    assert not re.search(r"wrote|created|migrated", result.output)
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before


def test_init_only_adds_what_is_missing(tmp_path):
    config = tmp_path / "config.toml"
    invoke("--config", config, "init")
    config_text = config.read_text()
    (tmp_path / ".env").unlink()
    result = invoke("--config", config, "init")
    assert result.output.splitlines() == [f"wrote {tmp_path / '.env'}"]
    assert config.read_text() == config_text


def test_init_migrates_an_old_ledger(tmp_path):
    config = write_install(tmp_path, ledger=False)  # the ledger is the old one below
    names = migration_names()
    old = sqlite_utils.Database(tmp_path / "iptvsync.db")
    migrations.apply(old, stop_before=names[1])
    old.conn.execute("INSERT INTO inbox (received_at, body, dedupe_key, kind, last_seen_at)"
                     " VALUES ('2026-11-20T17:37:57Z', x'00', 'old-row', 'approved', '2026-11-20T17:37:57Z')")
    old.conn.commit()
    old.close()
    toml_before = config.read_text()

    result = invoke("--config", config, "init")
    assert result.exit_code == 0
    assert result.output.strip() == (f"migrated ledger {tmp_path / 'iptvsync.db'} "
                                      f"({len(names) - 1} migrations)")
    assert config.read_text() == toml_before
    led = Ledger(tmp_path / "iptvsync.db", migrate=False)
    assert led.pending_migrations() == []
    assert led.one("SELECT dedupe_key FROM inbox")["dedupe_key"] == "old-row"


# --- inbox ----------------------------------------------------------------------------------------------

def sample(sale: str, email: str = "maria@example.com", event: int = 2) -> tuple[bytes, str]:
    payload = json.loads((FIXTURES / "monetizze" / "approved-first-charge.json").read_text("utf-8"))
    payload.pop("json", None)
    payload["venda"]["codigo"] = payload["codigo_venda"] = sale
    payload["comprador"]["email"] = email
    payload["tipoEvento"]["codigo"] = event
    return json.dumps(payload).encode(), "application/json"


def put(ledger: Ledger, body: bytes, content_type: str, at: datetime, *, as_receiver: bool = True) -> int:
    _, pb = parse(body, content_type)
    stored = redact(body, CHAVE) if as_receiver else body
    inbox_id, _dup = store(ledger, inbox_row(pb, stored, content_type=content_type, remote_addr="203.0.113.9",
                                             at=at))
    return inbox_id


@pytest.fixture
def filled(install, cfg):
    """Four postbacks: two for maria, one for joao (mixed case in the payload), one form body."""
    ledger = Ledger(cfg.ledger_path)
    ids = {
        "a": put(ledger, *sample("51000001"), datetime(2026, 11, 18, 9, 0, tzinfo=UTC)),
        "b": put(ledger, *sample("51000002", "Joao@Example.COM"), datetime(2026, 11, 20, 9, 30, tzinfo=UTC)),
        "c": put(ledger, *sample("51000003"), datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
        "form": put(ledger, (FIXTURES / "monetizze" / "renewal-second-charge.form").read_bytes(),
                    "application/x-www-form-urlencoded", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
    }
    ledger.close()
    return install, ids


def list_json(config, *options) -> list[dict]:
    result = invoke("--config", config, "inbox", "list", "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_inbox_list_json(filled):
    config, ids = filled
    rows = list_json(config)
    assert [r["id"] for r in rows] == sorted(ids.values(), reverse=True)  # newest first
    for row in rows:
        assert {"id", "received_at", "event", "kind", "sale_code", "parcela", "product_code", "buyer_email",
                "status", "reason", "times_seen"} <= set(row)
        assert ISO_UTC.fullmatch(row["received_at"]), row["received_at"]
        assert datetime.fromisoformat(row["received_at"]).utcoffset().total_seconds() == 0
        assert ISO_UTC.fullmatch(row["last_seen_at"])
    by_id = {r["id"]: r for r in rows}
    assert by_id[ids["a"]]["received_at"] == "2026-11-18T09:00:00Z"
    assert by_id[ids["a"]]["sale_code"] == "51000001" and by_id[ids["a"]]["status"] == "pending"
    assert by_id[ids["b"]]["buyer_email"] == "joao@example.com"
    assert CHAVE not in json.dumps(rows)


def test_inbox_list_filters(filled, install):
    config, ids = filled
    led = Ledger(Path(install).parent / "iptvsync.db")
    led.conn.execute("UPDATE inbox SET status = 'failed', reason = 'panel down' WHERE id = :id", {"id": ids["c"]})
    assert [r["id"] for r in list_json(config, "--status", "failed")] == [ids["c"]]
    assert [r["id"] for r in list_json(config, "--status", "pending")] == sorted(
        [ids["a"], ids["b"], ids["form"]], reverse=True)
    assert list_json(config, "--status", "unmapped") == []
    assert [r["id"] for r in list_json(config, "--email", "JOAO@example.com")] == [ids["b"]]
    assert [r["id"] for r in list_json(config, "--sale", "51000003")] == [ids["c"]]
    assert len(list_json(config, "--limit", "2")) == 2


@pytest.fixture
def sao_paulo_clock():
    """A server whose local time zone is not UTC."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "America/Sao_Paulo")
        time.tzset()
        yield
    time.tzset()


def test_inbox_list_since(filled, sao_paulo_clock):
    config, ids = filled
    with freeze_time("2026-11-21T08:00:00Z"):
        assert {r["id"] for r in list_json(config, "--since", "2d")} == {ids["b"], ids["c"], ids["form"]}
        assert {r["id"] for r in list_json(config, "--since", "22h")} == {ids["c"], ids["form"]}
    assert {r["id"] for r in list_json(config, "--since", "2026-11-20")} == {ids["b"], ids["c"], ids["form"]}
    # a date-time without a zone is UTC, as the help says, not the server's local time
    assert {r["id"] for r in list_json(config, "--since", "2026-11-20T10:00")} == {ids["c"], ids["form"]}
    assert {r["id"] for r in list_json(config, "--since", "2026-11-20T07:15:00-03:00")} == {ids["c"], ids["form"]}


def test_inbox_list_bad_since_is_a_usage_error(filled):
    config, _ = filled
    result = invoke("--config", config, "inbox", "list", "--since", "yesterday")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "yesterday" in result.stderr


def test_inbox_show_json(filled):
    config, ids = filled
    result = invoke("--config", config, "inbox", "show", ids["a"], "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["id"] == ids["a"] and row["sale_code"] == "51000001" and row["dedupe_key"] == "51000001:2:1"
    assert row["remote_addr"] == "203.0.113.9"
    for key in ("received_at", "last_seen_at", "paid_at"):
        assert ISO_UTC.fullmatch(row[key]), (key, row[key])
    assert isinstance(row["body"], dict)  # a JSON body is shown parsed
    assert row["body"]["venda"]["codigo"] == "51000001"
    assert row["body"]["chave_unica"] == ""
    assert CHAVE not in result.output

    form = invoke("--config", config, "inbox", "show", ids["form"], "--json")
    assert form.exit_code == 0
    assert "venda%5Bcodigo%5D" in json.loads(form.stdout)["body"] or "venda[codigo]" in json.loads(form.stdout)["body"]
    assert CHAVE not in form.output


def test_inbox_show_never_prints_the_chave_unica_even_if_stored(install, cfg):
    """A row written without redaction (an older version, a manual import) is still shown blanked."""
    ledger = Ledger(cfg.ledger_path)
    raw = (FIXTURES / "monetizze" / "approved-first-charge.form").read_bytes()
    assert CHAVE.encode() in raw
    inbox_id = put(ledger, raw, "application/x-www-form-urlencoded", datetime(2026, 11, 20, tzinfo=UTC),
                   as_receiver=False)
    for extra in ([], ["--json"]):
        result = invoke("--config", install, "inbox", "show", inbox_id, *extra)
        assert result.exit_code == 0
        assert CHAVE not in result.output
        assert "51000001" in result.output


def test_inbox_show_unknown_id_is_a_usage_error(filled):
    config, _ = filled
    result = invoke("--config", config, "inbox", "show", "999", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "999" in result.stderr and len(result.stderr.splitlines()) == 1


def test_inbox_retry_requeues_failed_and_unmapped_only(filled, install):
    config, ids = filled
    led = Ledger(Path(install).parent / "iptvsync.db")
    for key, status in (("a", "failed"), ("b", "unmapped"), ("c", "applied"), ("form", "ignored")):
        led.conn.execute("UPDATE inbox SET status = :s, attempts = 3, reason = 'x', run_after = '2026-12-01T00:00:00Z'"
                         " WHERE id = :id", {"s": status, "id": ids[key]})
    result = invoke("--config", config, "inbox", "retry")
    assert result.exit_code == 0
    assert result.output.startswith("2 postback(s) queued again")
    rows = {r["id"]: r for r in led.query("SELECT id, status, attempts, run_after, reason FROM inbox")}
    assert rows[ids["a"]] == {"id": ids["a"], "status": "pending", "attempts": 0, "run_after": None, "reason": None}
    assert rows[ids["b"]]["status"] == "pending"
    assert rows[ids["c"]]["status"] == "applied" and rows[ids["form"]]["status"] == "ignored"
    assert led.query("SELECT action FROM audit") == [{"action": "inbox.retry"}]
    assert invoke("--config", config, "inbox", "retry").output.startswith("0 postback(s)")

    # by id: also an applied row (that is `replay`)
    result = invoke("--config", config, "inbox", "replay", ids["c"])
    assert result.exit_code == 0 and result.output.startswith("1 postback(s)")
    assert led.one("SELECT status FROM inbox WHERE id = :id", {"id": ids["c"]})["status"] == "pending"
    assert led.verify_audit() == (2, None)


# --- backup and audit verify -------------------------------------------------------------------------

def test_backup_command(filled, tmp_path):
    config, ids = filled
    target = tmp_path / "backups" / "iptvsync-copy.db"
    result = invoke("--config", config, "backup", target)
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert Ledger(target).one("SELECT count(*) AS n FROM inbox")["n"] == len(ids)

    again = invoke("--config", config, "backup", target)
    assert again.exit_code == 1
    assert len(again.stderr.splitlines()) == 1 and "already exists" in again.stderr


def test_audit_verify_ok_then_tampered(install, cfg):
    ledger = Ledger(cfg.ledger_path)
    with ledger.tx():
        ledger.audit("subscription.extended", subscription_id=1, days=30)
        ledger.audit("subscription.extended", subscription_id=1, days=7)
    ok = invoke("--config", install, "audit", "verify")
    assert ok.exit_code == 0
    assert "ok" in ok.output and "2 rows" in ok.output

    second = ledger.query("SELECT id FROM audit ORDER BY id")[1]["id"]
    ledger.conn.execute("UPDATE audit SET detail = '{\"days\": 700}' WHERE id = :id", {"id": second})
    broken = invoke("--config", install, "audit", "verify")
    assert broken.exit_code == 1
    assert f"row {second}" in broken.stderr


# --- secrets never in tracebacks ----------------------------------------------------------------------

def test_typer_app_never_shows_locals():
    assert app.pretty_exceptions_show_locals is False


def test_a_crash_traceback_never_contains_secret_values(tmp_path):
    """An unexpected error inside load_config, whose frame holds the environment and .env: the
    traceback the CLI prints names the error but shows no secret."""
    env_secret = "ENV-CHAVE-7f3a9c1e5b2d4f60"
    dotenv_secret = "DOTENV-SMTP-PASSWORD-91b2c3"
    config = write_install(tmp_path, BASE_TOML, {"SMTP_PASSWORD": dotenv_secret})
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import iptvsync.config

        def broken_products(*args, **kwargs):
            raise RuntimeError("forced failure for the test")

        iptvsync.config._products = broken_products
        sys.argv = ["iptvsync", "--config", {str(config)!r}, "inbox", "list"]
        from iptvsync.cli import main
        main()
    """))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "COLUMNS": "200",
           "MONETIZZE_CHAVE_UNICA": env_secret}
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "forced failure for the test" in output  # the traceback was printed
    for secret in (env_secret, dotenv_secret, SECRET_KEY, CHAVE):
        assert secret not in output


# --- packaging ---------------------------------------------------------------------------------------

def test_every_data_file_the_package_reads_is_declared_as_package_data():
    """`init` copies data/config.example.toml out of the installed package; a plain (non-editable)
    install only carries what [tool.setuptools.package-data] lists."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["iptvsync"]
    package = ROOT / "iptvsync"
    declared = {Path(match).as_posix() for pattern in patterns
                for match in glob.glob(pattern, root_dir=package, recursive=True)}
    data_files = {p.relative_to(package).as_posix() for p in package.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert "data/config.example.toml" in data_files
    assert data_files - declared == set()


# --- CI runs what the README says ----------------------------------------------------------------------

def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    readme = (ROOT / "README.md").read_text("utf-8") if (ROOT / "README.md").exists() else ""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    commands = [line.strip().removeprefix("$ ").strip()
                for block in blocks for line in block.splitlines() if "pytest" in line]
    if commands:
        for command in commands:
            assert command in ci, f"README's test command is not what .ci/run runs: {command}"
    else:
        run_lines = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        assert any(re.search(r"\bpytest\b", line) for line in run_lines)


def test_inbox_show_blanks_the_configured_product_key_too(tmp_path):
    """produto[chave] authenticates postbacks when check_product_key is on: a secret like the key."""
    product_key = "fedcba9876543210fedcba9876543210"  # what the sample postbacks carry
    install = write_install(tmp_path / "i", BASE_TOML.replace('name = "IPTV Mensal"',
                                                              f'name = "IPTV Mensal"\nkey = "{product_key}"'))
    from iptvsync.config import load_config

    ledger = Ledger(load_config(install).ledger_path)
    raw = (FIXTURES / "monetizze" / "approved-first-charge.form").read_bytes()
    assert product_key.encode() in raw
    inbox_id = put(ledger, raw, "application/x-www-form-urlencoded", datetime(2026, 11, 20, tzinfo=UTC))
    for extra in ([], ["--json"]):
        result = invoke("--config", install, "inbox", "show", inbox_id, *extra)
        assert result.exit_code == 0
        assert product_key not in result.output and "51000001" in result.output


# --- what an operator command loads -----------------------------------------------------------

#: what the read-only commands never need: HTTP clients and retries (panel calls), templates
#: (emails), sqlite-utils (migrations), cryptography (panel passwords), the receiver's server
HEAVY = ("requests", "urllib3", "tenacity", "jinja2", "sqlite_utils", "cryptography", "cheroot", "pydantic")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_read_only_commands_import_nothing_heavy_whatever_the_panel(kind, tmp_path):
    """`status`, `subs show` and `logs --email` start in well under 150 ms only if they import what they
    use (bench/startup.py times them; this proves the imports). Reading the config imports
    the configured panel's adapter for its ``caps``: not its HTTP client. What they print at
    80 columns is plain text: rich's console is imported for tables only."""
    from iptvsync.panels.registry import capabilities

    caps = capabilities(kind)
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "{kind}"' + ('\nurl = "http://127.0.0.1:9"' * caps.needs_url))
    if caps.extends_by_package:
        toml = toml.replace("bouquets = [1, 2, 3]", "bouquets = [1, 2, 3]\npackage = 1")
    config = write_install(tmp_path, toml, env={"PANEL_MAIN_API_KEY": "k"} if caps.needs_api_key else None)
    subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(config), "init"], check=True,
                   capture_output=True, timeout=60)
    ledger = Ledger(tmp_path / "iptvsync.db")
    deliver(ledger, payload(2))
    apply_inbox(ledger, load_config(config), now())  # a subscription and its audit rows; no panel call
    ledger.close()
    env = {**os.environ, "COLUMNS": "80"}
    for command, shown in ((["status"], "inbox_pending"), (["subs", "show", "1"], "maria@example.com"),
                           (["logs", "--email", "maria@example.com"], "charge.paid")):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "iptvsync", "--config", str(config),
                               *command], capture_output=True, text=True, timeout=60, env=env)
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert shown in done.stdout and done.returncode in (0, 1), (command, done.stdout, done.stderr[-500:])
        assert not {m for m in imported if m.split(".")[0] in HEAVY}, (kind, command)
        # one item, and records at 80 columns: plain text, without rich's console (~25 ms)
        assert "rich.console" not in imported, command
        # nor what only help (rich's markup), an unusual [email] from (email.utils, socket) or
        # a panel call (hashlib, hmac: a dry-run line's password hash) needs: ~25 ms together;
        # `status` probes the receiver's /healthz itself (issue 18), over a plain socket (~5 ms)
        light = {"rich.markup", "email.utils", "hashlib", "hmac"} | (set() if command == ["status"] else {"socket"})
        assert not imported & light, (kind, command)
