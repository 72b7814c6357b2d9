"""What the operator reads, as they read it: help and error texts at 80 columns (COLUMNS=80,
TERM=dumb, not a terminal), each expected text inline below so a reviewer sees them in one
place. The install's folder prints as <install>; trailing spaces are dropped.

When a text changes on purpose, update it here: the diff is the review.
"""

from __future__ import annotations

import re
import socket

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from support.install import BASE_TOML, write_install
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.cli.help import PANELS, escape
from iptvsync.cli.output import cell_len
from iptvsync.ledger.db import Ledger

_register()
ENV = {"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}


def render(*args, install=None) -> str:
    argv = (["--config", str(install)] if install else []) + [str(a) for a in args]
    result = CliRunner().invoke(app, argv, env=ENV, catch_exceptions=False, prog_name="iptvsync")
    text = result.output
    if install:
        text = text.replace(str(install.parent), "<install>")
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:  # rich starts help with an empty line
        lines.pop(0)
    return "\n".join(lines).rstrip() + f"\n[exit {result.exit_code}]"


def install_with(tmp_path, toml: str = BASE_TOML, env: dict | None = None):
    return write_install(tmp_path / "install", toml, env)


# --- help ----------------------------------------------------------------------------------------------

TOP_HELP = """\
 Usage: iptvsync [OPTIONS] COMMAND [ARGS]...

 Monetizze postbacks in, IPTV lines and buyer emails out.

╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --config   -c      CONFIG  config.toml to use (default ./config.toml).       │
│                            [env var: IPTVSYNC_CONFIG]                        │
│ --verbose  -v              Log debug details.                                │
│ --help                     Show this message and exit.                       │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Daily ──────────────────────────────────────────────────────────────────────╮
│ status     Queue depth, oldest pending, dead items, last run; exit 1 when    │
│            unhealthy.                                                        │
│ logs       The audit trail, oldest first.                                    │
│ subs       Subscriptions and manual management.                              │
│ inbox      Stored postbacks and their outcome.                               │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Setup ──────────────────────────────────────────────────────────────────────╮
│ init       Write config.toml and .env with fresh secrets if missing; create  │
│            or migrate the ledger.                                            │
│ doctor     Check config, ledger, panels (and reseller credits), SMTP login   │
│            and the TLS certificate.                                          │
│ deploy     Service files rendered for this install.                          │
│ simulate   Post realistic postbacks to the running receiver.                 │
│ mail       Check the email setup; operator alerts.                           │
│ notify     Check the WhatsApp setup by sending one message.                  │
│ admin      The web admin console: operators and the server.                  │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Machinery ──────────────────────────────────────────────────────────────────╮
│ serve      Run the postback receiver until SIGTERM.                          │
│ process    Apply postbacks, sync panels, send emails, sweep expiries.        │
│ reconcile  Compare the ledger with Monetizze and the panels.                 │
│ backup     Online copy of the ledger; dated and rotated with --keep N.       │
│ audit      The audit trail's integrity.                                      │
│ restore    Replace the ledger with a backup; the old one is kept aside.      │
│ rekey      Re-encrypt panel passwords under a new IPTVSYNC_SECRET_KEY.       │
╰──────────────────────────────────────────────────────────────────────────────╯

 Examples:

 iptvsync status                          healthy? (exit 1 if not)

 iptvsync logs --email maria@example.com  what happened to one buyer

 iptvsync subs list --state grace         who is past paid_until, in grace
[exit 0]"""

SUBS_LIST_HELP = """\
 Usage: iptvsync subs list [OPTIONS]

 List subscriptions, newest first, with their state.

╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --email        EMAIL  Only this buyer's subscriptions.                       │
│ --state        STATE  Only subscriptions in this state: active, grace,       │
│                       suspended, disputed, cancelled, expired, refunded or   │
│                       unpaid.                                                │
│ --dead                Only subscriptions whose panel work is dead.           │
│ --limit        N      At most N subscriptions. [default: 100]                │
│ --json                Print JSON (times in ISO-8601 UTC) instead of a table. │
│ --wide                Keep the table however wide it gets (default: a record │
│                       per row when it does not fit the terminal).            │
│ --help                Show this message and exit.                            │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""

SIMULATE_HELP = """\
 Usage: iptvsync simulate purchase [OPTIONS]

 A paid first charge of a new subscription (--live: a marked rehearsal on the
 live system).

╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --email               EMAIL         Buyer email (--live: yours).             │
│                                     [default: comprador@example.com]         │
│ --product             PRODUCT       Product code (default: the first in      │
│                                     [products]).                             │
│ --sale                SALE          Sale code (default: a fresh SIM… code;   │
│                                     cancel, refund, dispute: the last        │
│                                     charge's).                               │
│ --subscription        SUBSCRIPTION  Subscription (its code, id or buyer      │
│                                     email): its product, buyer and charges.  │
│ --parcela             PARCELA       Charge number (default 1; renewal: the   │
│                                     next one; cancel, refund, dispute: the   │
│                                     last charge's).                          │
│ --url                 URL           Receiver URL (default: from [receiver]). │
│ --insecure                          Do not verify the TLS certificate (a     │
│                                     self-signed one).                        │
│ --yes                               Do not ask before changing a line on a   │
│                                     real panel.                              │
│ --live                              Rehearsal: follow it through panel and   │
│                                     email, then disable the test line.       │
│ --wait                SECONDS       --live: how long to wait for each step.  │
│                                     [default: 300]                           │
│ --help                              Show this message and exit.              │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""


SERVE_HELP = """\
 Usage: iptvsync serve [OPTIONS]

 Run the postback receiver until SIGTERM.

╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --host                          HOST      Listen address (default [receiver] │
│                                           host).                             │
│ --port                          PORT      Listen port (default [receiver]    │
│                                           port).                             │
│ --certfile                      CERTFILE  TLS certificate (PEM).             │
│ --keyfile                       KEYFILE   TLS private key (PEM).             │
│ --process-every                 SECONDS   Also run `process` every SECONDS   │
│                                           (installs without cron).           │
│                                           [default: 0]                       │
│ --process-on-postback                     Run `process` as soon as a         │
│                                           postback is stored (default: on    │
│                                           with --process-every).             │
│ --no-process-on-postback                  Do not: with --process-every, run  │
│                                           `process` only on its clock.       │
│ --help                                    Show this message and exit.        │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""

NOTIFY_TEST_HELP = """\
 Usage: iptvsync notify test [OPTIONS] {CHANNEL} {NUMBER}

 Send one test message through the configured gateway; show each step's
 outcome.

╭─ Arguments ──────────────────────────────────────────────────────────────────╮
│ *    CHANNEL        The channel to test: whatsapp. [required]                │
│ *    NUMBER         Where to send it, e.g. +5511987654321. [required]        │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --help          Show this message and exit.                                  │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""

SUBS_PHONES_HELP = """\
 Usage: iptvsync subs phones [OPTIONS]

 WhatsApp numbers for subscriptions older than WhatsApp, from their stored
 postbacks.

 Nothing changes without --backfill; one without a stored postback waits for
 its next one.

╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --backfill          Write the numbers found (audited); without it nothing    │
│                     changes.                                                 │
│ --json              Print JSON (times in ISO-8601 UTC) instead of a table.   │
│ --wide              Keep the table however wide it gets (default: a record   │
│                     per row when it does not fit the terminal).              │
│ --help              Show this message and exit.                              │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""

ADMIN_USER_ADD_HELP = """\
 Usage: iptvsync admin user add [OPTIONS] {NAME}

 Add an operator (asks for the password twice unless --password-stdin).

╭─ Arguments ──────────────────────────────────────────────────────────────────╮
│ *    NAME        Operator name (lowercase letters, digits, . _ -).           │
│                  [required]                                                  │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Options ────────────────────────────────────────────────────────────────────╮
│ *  --role                  ROLE      owner (everything) or support (look,    │
│                                      resend access, retry).                  │
│                                      [required]                              │
│    --language              LANGUAGE  The console's language for this         │
│                                      operator: pt-BR or en.                  │
│                                      [default: pt-BR]                        │
│    --password-stdin                  Read the password from the first line   │
│                                      of stdin.                               │
│    --help                            Show this message and exit.             │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""


SUBS_PHONE_HELP = """\
 Usage: iptvsync subs phone [OPTIONS] {REF} [NUMBER]

 Correct (or --clear) a buyer's WhatsApp number; its queued messages follow.

 Audited, the number masked. Once cleared, a later postback does not bring it
 back.

╭─ Arguments ──────────────────────────────────────────────────────────────────╮
│ *    REF           Subscription id, key, username or buyer email. [required] │
│      NUMBER        The buyer's WhatsApp number, e.g. '11 98765-4321'.        │
╰──────────────────────────────────────────────────────────────────────────────╯
╭─ Options ────────────────────────────────────────────────────────────────────╮
│ --clear          Remove the number: email only from then on.                 │
│ --help           Show this message and exit.                                 │
╰──────────────────────────────────────────────────────────────────────────────╯
[exit 0]"""

@pytest.mark.parametrize(("args", "expected"), [
    ((), TOP_HELP.replace("[exit 0]", "[exit 2]")),  # no command: the same help, exit 2 (a usage error)
    (("--help",), TOP_HELP),
    (("subs", "list", "--help"), SUBS_LIST_HELP),
    (("simulate", "purchase", "--help"), SIMULATE_HELP),
    (("serve", "--help"), SERVE_HELP),
    (("notify", "test", "--help"), NOTIFY_TEST_HELP),
    (("subs", "phones", "--help"), SUBS_PHONES_HELP),
    (("admin", "user", "add", "--help"), ADMIN_USER_ADD_HELP),
    (("subs", "phone", "--help"), SUBS_PHONE_HELP),
], ids=["no-arguments", "top", "subs-list", "simulate-purchase", "serve", "notify-test", "subs-phones",
        "admin-user-add", "subs-phone"])
def test_help_texts(args, expected):
    assert render(*args) == expected


def walk(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


def test_every_help_page_has_no_type_labels_and_every_option_explains_itself():
    from iptvsync.cli.help import polish

    root = typer.main.get_command(app)
    polish(root)
    for path, command in walk(root):
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option":
                assert (param.help or "").strip(), f"iptvsync {' '.join(path)} {param.opts[0]} has no help"
        text = render(*path, "--help")
        assert text.endswith("[exit 0]"), (path, text)
        for label in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list"):
            assert label not in text, (path, label, text)


def test_every_bracket_in_help_is_shown():
    """Help is rich markup to Typer: "[products]" would vanish unless escaped."""
    for path, command in walk(typer.main.get_command(app)):
        text = " ".join(render(*path, "--help").split())
        for param in command.params:
            for word in (param.help or "").split():
                if "[" in word:
                    assert word in text, (path, word)


def test_every_option_name_is_shown_whole_at_80_columns():
    """An option the operator cannot read in full cannot be typed: no name cut to "--process-on-postba…"."""
    for path, command in walk(typer.main.get_command(app)):
        text = render(*path, "--help")
        assert not re.search(r"-[\w-]*…", text), (path, text)
        for param in command.params:
            for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
                if name.startswith("--"):
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w…-])", text), (path, name, text)


def test_the_top_level_help_groups_every_command():
    root = typer.main.get_command(app)
    assert set(root.commands) <= set(PANELS), set(root.commands) - set(PANELS)


# --- errors: one line naming the key and the file, the right exit code ------------------------------------

PANEL = '[panels.main]\nkind = "dry-run"\n'
PRODUCT = '[products.145388]\npanel = "main"\ndays = 30\n'


@pytest.mark.parametrize(("toml", "env", "expected"), [
    (PANEL + '[panels.main.links]\nm3u = "{server}/get.php?u={user}"\n' + PRODUCT, None,
     "error: <install>/config.toml: [panels.main.links] m3u has an unknown placeholder {user} (known:"
     " {server}, {username}, {password})\n[exit 2]"),
    (PANEL + PRODUCT.replace("days = 30\n", "") + "days = -1\n", None,
     "error: <install>/config.toml: [products.145388] days must be positive (or omitted when period is"
     " set), got -1\n[exit 2]"),
    ("", None,
     "error: <install>/config.toml: the config file is empty (run 'iptvsync init' in an empty folder for a"
     " complete one)\n[exit 2]"),
    (PANEL, None,
     "error: <install>/config.toml: no [products.<code>]: add one per Monetizze product you sell (see"
     " config.example.toml)\n[exit 2]"),
    ('[panels.main]\nkind = "xtream-codes"\nurl = "panel.example.com:25500"\n' + PRODUCT, None,
     "error: <install>/config.toml: [panels.main] url must start with http:// or https://, got"
     " 'panel.example.com:25500'\n[exit 2]"),
    ('[panels.main]\nkind = "xui-admin"\nurl = "http://panel.example.com/abc"\n' + PRODUCT, None,
     "error: <install>/.env: PANEL_MAIN_API_KEY is not set (environment or .env): the API key of"
     " [panels.main]\n[exit 2]"),
    (PANEL + PRODUCT, {"IPTVSYNC_SECRET_KEY": "not-a-key"},
     "error: <install>/.env: IPTVSYNC_SECRET_KEY is not a valid key (44 characters of url-safe base64;"
     " `iptvsync init` in an empty folder writes a fresh one)\n[exit 2]"),
    (PANEL + PRODUCT + "[receiver]\nport = 99999\n", None,
     "error: <install>/config.toml: [receiver] port must be between 1 and 65535, got 99999\n[exit 2]"),
    (PANEL + PRODUCT + '[receiver]\nallowed_ips = ["300.1.1.1/24"]\n', None,
     "error: <install>/config.toml: [receiver] allowed_ips has '300.1.1.1/24', which is not an IP address or"
     ' CIDR such as "203.0.113.0/24"\n[exit 2]'),
    (PANEL + PRODUCT + '[whatsapp]\nchannels = ["email", "whatsapp"]\n', None,
     "error: <install>/config.toml: [whatsapp] gateway is empty but a channels list names whatsapp (one of"
     " evolution, z-api, cloud-api)\n[exit 2]"),
    (PANEL + PRODUCT + '[whatsapp]\ngateway = "evolution"\nurl = "http://127.0.0.1:8080"\ninstance = "loja"\n'
     'channels = ["email", "whatsapp"]\n', None,
     "error: <install>/.env: WHATSAPP_TOKEN is not set (environment or .env): the [whatsapp] evolution"
     " gateway's credential\n[exit 2]"),
    (PANEL + PRODUCT + 'channels = ["email", "sms"]\n', None,
     "error: <install>/config.toml: [products.145388] channels must be among email, whatsapp, got 'sms'"
     "\n[exit 2]"),
], ids=["placeholder", "days", "empty", "no-products", "url-scheme", "api-key", "secret-key", "port", "cidr",
    "whatsapp-gateway", "whatsapp-token", "channels"])
def test_config_errors(tmp_path, toml, env, expected):
    install = install_with(tmp_path, toml, env)
    assert render("status", install=install) == expected
    assert render("doctor", install=install) == expected


@pytest.mark.parametrize(("args", "expected"), [
    (("inbox", "list", "--status", "bogus"),
     "error: --status must be one of pending, applied, ignored, unmapped, failed, held, got 'bogus'\n[exit 2]"),
    (("inbox", "replay", "999"), "error: no stored postback with id 999 (see `iptvsync inbox list`)\n[exit 2]"),
    (("subs", "grant", "--email", "a@example.com", "--product", "999", "--days", "3", "--key", "k"),
     "error: --product 999 is not a [products.<code>] of <install>/config.toml (known: 145388)\n[exit 2]"),
    (("subs", "list", "--state", "late"),
     "error: --state must be one of active, grace, suspended, disputed, cancelled, expired, refunded, unpaid,"
     " got 'late'\n[exit 2]"),
    (("serve", "--certfile", "/nowhere/cert.pem"), "error: --certfile: /nowhere/cert.pem does not exist\n[exit 2]"),
    (("logs", "--subscription", "abc"), "error: no subscription 'abc'\n[exit 2]"),
    (("notify", "test", "sms", "+5511987654321"),
     "error: channel must be whatsapp (email: `iptvsync mail test ADDRESS`), got 'sms'\n[exit 2]"),
    (("serve", "--process-on-postback", "--no-process-on-postback"),
     "error: --process-on-postback and --no-process-on-postback contradict each other: pass one\n[exit 2]"),
    (("subs", "import"),
     "error: --product is needed to import from the panel (its lines do not say what was sold)\n[exit 2]"),
    (("subs", "grant", "--email", "a@example.com", "--product", "145388", "--days", "3", "--key", "k", "--phone",
      "11 98765-4321"),
     "error: --phone: product 145388 does not send on WhatsApp (its channels: email)\n[exit 2]"),
    (("subs", "grant", "--email", "a@example.com", "--product", "145388", "--days", "3", "--key", " "),
     "error: --key must not be empty: name this grant, e.g. --key pix-maria-2026-03\n[exit 2]"),
    (("subs", "grant", "--email", "a@example.com", "--product", "145388", "--days", "100000", "--key", "k"),
     "error: --days must be at most 3660 (ten years), got 100000\n[exit 2]"),
    (("subs", "phone", "1"), "error: give the NUMBER, or --clear to remove it\n[exit 2]"),
    (("subs", "phone", "1", "11 98765-4321", "--clear"), "error: give the NUMBER or --clear (not both)\n[exit 2]"),
    (("subs", "phone", "1", "11 98765-4321"), "error: no subscription '1'\n[exit 2]"),
], ids=["inbox-status", "inbox-replay", "subs-grant-product", "subs-state", "serve-certfile", "logs-subscription",
    "notify-channel", "serve-on-postback", "subs-import", "subs-grant-phone", "subs-grant-key", "subs-grant-days",
    "subs-phone-none", "subs-phone-both", "subs-phone-ref"])
def test_usage_errors(tmp_path, args, expected):
    assert render(*args, install=install_with(tmp_path)) == expected


def test_a_key_reused_for_another_grant(tmp_path):
    install = install_with(tmp_path)
    render("subs", "grant", "--email", "a@example.com", "--product", "145388", "--days", "3", "--key", "k",
           install=install)
    assert render("subs", "grant", "--email", "z@example.com", "--product", "145388", "--days", "3", "--key", "k",
                  install=install) == ("error: --key k already served subscription 1 (a@example.com, product 145388,"
                                       " 3 days): nothing added; use a new --key\n[exit 1]")


def test_serve_on_a_busy_port(tmp_path):
    install = install_with(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = render("serve", "--port", port, install=install).replace(str(port), "<port>")
    assert got == ("error: cannot listen on 127.0.0.1:<port> ([receiver] host and port, or --host/--port): the port"
                   " is already in use (another `iptvsync serve`, or another program)\n[exit 1]")


def test_status_hint_for_unmapped_postbacks(tmp_path):
    install = install_with(tmp_path)
    ledger = Ledger(install.parent / "iptvsync.db")
    deliver(ledger, payload(2, product="999"))
    render("process", install=install)
    got = render("status", install=install)
    assert "UNHEALTHY: 1 unmapped postback(s): `iptvsync inbox list --status unmapped`" in got.splitlines()
    assert got.endswith("[exit 1]")


# --- lists and records at 80 columns, not a terminal -------------------------------------------------------

LONG_EMAIL = "maria.aparecida.dos.santos.oliveira@provedor-exemplo.com.br"

SUBS_LIST = """\
subscriptions (2)
────────────────────────────────────────
id            2
state         active
buyer_email   maria.aparecida.dos.santos.oliveira@provedor-exemplo.com.br
paid_until    2026-12-20 15:00 -03
product_code  145388
key           manual:gift-2
sync_status   pending
────────────────────────────────────────
id            1
state         active
buyer_email   joao@example.com
paid_until    2026-11-22 15:00 -03
product_code  145388
key           manual:gift-1
sync_status   pending
[exit 0]"""


@pytest.fixture
def two_grants(tmp_path):
    from freezegun import freeze_time

    install = install_with(tmp_path)
    with freeze_time("2026-11-20T18:00:00Z"):
        render("subs", "grant", "--email", "joao@example.com", "--product", "145388", "--days", "2", "--key",
               "gift-1", install=install)
        render("subs", "grant", "--email", LONG_EMAIL, "--product", "145388", "--days", "30", "--key", "gift-2",
               "--name", "[bold]Maria[/bold] [products.999]", install=install)
    return install


def test_subs_list_at_80_columns_is_a_record_per_row_that_never_cuts_an_email(two_grants):
    from freezegun import freeze_time

    with freeze_time("2026-11-21T12:00:00Z"):
        assert render("subs", "list", install=two_grants) == SUBS_LIST
        wide = render("subs", "list", "--wide", install=two_grants)
        by_state = render("subs", "list", "--state", "grace", install=two_grants)
    assert max(len(line) for line in wide.splitlines()) > 80
    assert any(LONG_EMAIL in line and "2026-12-20 15:00 -03" in line for line in wide.splitlines())
    assert by_state == "subscriptions: (none)\n[exit 0]"


def test_a_buyer_name_with_brackets_is_printed_as_written(two_grants):
    shown = render("subs", "show", LONG_EMAIL, install=two_grants)
    assert "buyer_name          [bold]Maria[/bold] [products.999]" in shown
    assert "paid_until          2026-12-20 15:00 -03" in shown
    assert "access_until        2026-12-20 15:00 -03" in shown  # a grant does not renew: no grace


def test_json_keeps_iso_utc(two_grants):
    import json

    result = CliRunner().invoke(app, ["--config", str(two_grants), "subs", "list", "--json"], env=ENV)
    rows = json.loads(result.stdout)
    assert [r["paid_until"] for r in rows] == ["2026-12-20T18:00:00Z", "2026-11-22T18:00:00Z"]
    assert rows[0]["buyer_email"] == LONG_EMAIL and rows[0]["state"] == "active"


def test_inbox_list_and_logs_at_80_columns_show_whole_emails_and_actions(tmp_path):
    install = install_with(tmp_path)
    ledger = Ledger(install.parent / "iptvsync.db")
    deliver(ledger, payload(2, email=LONG_EMAIL))
    render("process", install=install)
    for args in (("inbox", "list"), ("logs",)):
        lines = render(*args, install=install).splitlines()
        assert not any("…" in line for line in lines), (args, lines)
        assert any(LONG_EMAIL in line for line in lines), (args, lines)
        assert all(len(line) <= 80 for line in lines), (args, lines)
    logs = render("logs", install=install)
    assert "email.sent" in logs and "panel.created" in logs
    assert " -03" in logs and not re.search(r"\d{4}-\d\d-\d\dT\d\d", logs)  # São Paulo, never raw ISO


def test_logs_at_80_columns_never_split_a_message_id_or_an_email(tmp_path):
    install = install_with(tmp_path)
    ledger = Ledger(install.parent / "iptvsync.db")
    deliver(ledger, payload(2, email=LONG_EMAIL))
    render("process", install=install)
    message_id = ledger.one("SELECT message_id FROM outbox")["message_id"]
    assert len(message_id) > 50
    lines = render("logs", "--email", LONG_EMAIL, install=install).splitlines()
    assert any(line.endswith(" " + message_id) for line in lines), lines  # whole, on a line of its own
    assert any(line.endswith(" message_id=") for line in lines), lines
    assert sum(LONG_EMAIL in line for line in lines) == 3, lines
    assert all(len(line) <= 80 for line in lines), lines


def test_a_token_longer_than_the_line_overflows_whole():
    from iptvsync.cli.output import _field_lines

    url = "https://panel.example.com/api.php?action=user&sub=" + "x" * 60
    lines = _field_lines([("last_error", f"HTTP 502 from {url} after 3 tries")], 80, skip_empty=True)
    assert lines == ["last_error  HTTP 502 from", f"            {url}", "            after 3 tries"]


def test_logs_spell_enabled_yes_or_no_whatever_the_audit_stored(tmp_path):
    import json

    install = install_with(tmp_path)
    ledger = Ledger(install.parent / "iptvsync.db")
    deliver(ledger, payload(2))
    render("process", install=install)
    stored = {row["action"]: json.loads(row["detail"])["enabled"]
              for row in json.loads(render("logs", "--json", install=install).rsplit("\n", 1)[0])
              if "enabled" in json.loads(row["detail"])}
    assert stored == {"charge.paid": True, "panel.created": 1}  # --json: as stored
    logs = render("logs", install=install)
    assert logs.count("enabled=yes") == 2 and "enabled=1" not in logs, logs


def test_an_audit_detail_enabled_0_reads_no():
    from iptvsync.cli.output import text

    assert text('{"panel": "main", "enabled": 0, "line_id": 1}') == "panel=main  enabled=no  line_id=1"
    assert text('{"enabled": false, "count": 1}') == "enabled=no  count=1"


def test_doctor_at_80_columns_stays_a_table_with_its_detail_wrapped(tmp_path):
    install = install_with(tmp_path)
    render("init", install=install)
    lines = render("doctor", install=install).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert any(line.startswith("┃ check") for line in lines)
    assert "│ example values         │ warn   │ still the example's, buyers would see      │" in lines


def test_status_problems_read_in_sao_paulo_time(tmp_path):
    from freezegun import freeze_time

    install = install_with(tmp_path)
    ledger = Ledger(install.parent / "iptvsync.db")
    with freeze_time("2026-11-20T18:00:00Z"):
        deliver(ledger, payload(2))
    with freeze_time("2026-11-20T19:00:00Z"):
        got = render("status", install=install)
    assert "UNHEALTHY: oldest pending postback is from 2026-11-20 15:00 -03: is cron running process?" in got


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from("[]/\\#@ab Z1"), max_size=24) | st.text(max_size=24))
def test_help_text_is_escaped_exactly_as_rich_escapes_it(text):
    """``help.escape`` stands in for ``rich.markup.escape`` so that no command imports rich's
    markup to start: it must give the same text for anything, tags and backslashes included."""
    from rich.markup import escape as rich_escape

    assert escape(text) == rich_escape(text)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=24) | st.text(alphabet=st.characters(max_codepoint=127), max_size=24))
def test_cells_are_counted_as_rich_counts_them(text):
    """``output.cell_len`` counts printable ASCII itself (no rich import for an ASCII table)
    and must agree with ``rich.cells.cell_len`` on anything: accents, wide CJK, controls."""
    from rich.cells import cell_len as rich_cell_len

    assert cell_len(text) == rich_cell_len(text)
