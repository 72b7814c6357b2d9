"""``process`` against fake panels on loopback that behave like the real ones, quirks included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from support.install import BASE_TOML, running, wait_for, write_install
from support.postbacks import deliver, payload
from support.xtream import FakeXtreamCodes
from support.xui import FakeXuiAdmin, FakeXuiReseller

from iptvsync.clock import SAO_PAULO, now, parse_iso
from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops import subs

KINDS = {"xui-admin": FakeXuiAdmin, "xui-reseller": FakeXuiReseller, "xtream-codes": FakeXtreamCodes}
#: Each family's fake with its quirks on (the defaults: XUI admin user in America/Sao_Paulo,
#: reseller packages of one calendar month and no API search, Xtream Codes on strict MySQL),
#: and Xtream Codes once more on a lenient MySQL.
FAMILIES = {"xui-admin": FakeXuiAdmin, "xui-reseller": FakeXuiReseller, "xtream-codes": FakeXtreamCodes,
            "xtream-codes-lenient": lambda: FakeXtreamCodes(strict=False)}


def panel_install(tmp_path, kind: str, url: str, *, concurrency: int = 4, extra: str = "",
                  api_key: str | None = None) -> object:
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "{kind}"\nurl = "{url}"\nmax_concurrency = {concurrency}'
                             f'\ntimeout_s = 2')
    if kind == "xui-reseller":  # a "1 Month" package: the product runs in calendar months too
        toml = toml.replace("bouquets = [1, 2, 3]", "package = 7").replace("days = 30", 'period = "1 month"')
    key = api_key if api_key is not None else {"xtream-codes": ""}.get(kind, "k")
    return load_config(write_install(tmp_path / "i", toml + extra, env={"PANEL_MAIN_API_KEY": key}))


def paid_now(offset_days: int = 0) -> str:
    return (now() + timedelta(days=offset_days)).astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")


def sub_row(ledger, key="sub:1104370"):
    return ledger.one("SELECT * FROM subscriptions WHERE key = ?", (key,))


def backoff_elapsed(ledger):
    """As if the retry delay had passed (the runs below happen seconds apart, not minutes)."""
    with ledger.tx() as conn:
        conn.execute("UPDATE subscriptions SET run_after = NULL")
        conn.execute("UPDATE outbox SET run_after = NULL")


def sent(ledger):
    return [r["kind"] for r in ledger.query("SELECT kind FROM outbox WHERE status = 'sent' ORDER BY id")]


@pytest.fixture(params=sorted(FAMILIES))
def panel(request):
    fake = FAMILIES[request.param]()
    with fake:
        yield request.param.removesuffix("-lenient"), fake


@pytest.fixture
def installed(tmp_path, panel):
    """(kind, fake panel, config, ledger): an install on each panel family's fake."""
    kind, fake = panel
    cfg = panel_install(tmp_path, kind, fake.url)
    return kind, fake, cfg, Ledger(cfg.ledger_path)


def test_purchase_creates_one_verified_line(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    summary = run_process(cfg)
    assert summary["sync"] == {"synced": 1, "failed": 0, "dead": 0, "skipped": 0}
    [line] = fake.lines.values()
    sub = sub_row(ledger)
    assert str(line["id"]) == sub["line_id"] and line["username"] == sub["username"]
    assert int(line["enabled"]) == 1 and int(line.get("is_trial") or 0) == 0
    assert int(line["max_connections"]) == 1
    paid_until = int(parse_iso(sub["paid_until"]).timestamp())
    if kind == "xui-reseller":  # the package decides: one calendar month from now
        assert abs(int(line["exp_date"]) - paid_until) < 120
        assert fake.credits == 9
    else:
        assert abs(int(line["exp_date"]) - (paid_until + 3 * 86400)) <= 1  # + grace_days
        assert sorted(line["bouquet"] if isinstance(line["bouquet"], list) else eval(line["bouquet"])) == [1, 2, 3]
    assert sent(ledger) == ["activation"]
    again = run_process(cfg)
    assert again["sync"]["synced"] == 0 and len(fake.lines) == 1


def test_renewal_extends_once_and_keeps_the_line_as_it_was(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    run_process(cfg)
    [line_id] = fake.lines
    deliver(ledger, payload(2, sale="51000777", parcela=2, paid=paid_now()))
    run_process(cfg)
    run_process(cfg)
    line = fake.lines[line_id]
    sub = sub_row(ledger)
    paid_until = int(parse_iso(sub["paid_until"]).timestamp())
    assert len(fake.lines) == 1
    assert int(line["enabled"]) == 1 and int(line.get("is_trial") or 0) == 0 and int(line["max_connections"]) == 1
    if kind == "xui-reseller":
        assert fake.credits == 8  # one package per paid period, not more
        assert abs(int(line["exp_date"]) - paid_until) < 86400
    else:
        assert abs(int(line["exp_date"]) - (paid_until + 3 * 86400)) <= 1
    assert sent(ledger) == ["activation", "renewal"]


def buyer_login(ledger, cfg, fake, key="sub:1104370"):
    """What the buyer's app sees: a login through the panel's player_api.php."""
    from iptvsync.credentials import decrypt
    from iptvsync.panels.player_api import player_login

    sub = sub_row(ledger, key)
    return player_login(fake.root, sub["username"], decrypt(sub["password_enc"], cfg.secrets.secret_key))


def test_a_bought_line_plays_in_the_buyers_app(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    run_process(cfg)
    login = buyer_login(ledger, cfg, fake)
    assert login.playable, login.detail
    assert login.status == "Active" and login.outputs


def test_whole_lifecycle_with_the_quirks_on(installed):
    """purchase -> renewal -> refund -> cancel, each verified on the panel and in the app."""
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    run_process(cfg)
    [line_id] = fake.lines
    first = int(fake.lines[line_id]["exp_date"])
    assert buyer_login(ledger, cfg, fake).playable
    deliver(ledger, payload(6, sale="51000777", parcela=2, paid=paid_now()))  # renewal seen only as "Completa"
    run_process(cfg)
    renewed = int(fake.lines[line_id]["exp_date"])
    assert renewed - first >= 28 * 86400 and buyer_login(ledger, cfg, fake).playable
    if kind == "xui-reseller":
        assert fake.credits == 8 and fake.lines[line_id]["reseller_notes"].endswith("]")
    deliver(ledger, payload(4, sale="51000777", parcela=2, paid=paid_now()))
    deliver(ledger, payload(4, paid=paid_now()))
    run_process(cfg)
    assert int(fake.lines[line_id]["enabled"]) == 0
    assert not buyer_login(ledger, cfg, fake).playable
    deliver(ledger, payload(103, sale="51000777", parcela=2, paid=paid_now()))
    run_process(cfg)
    sub = sub_row(ledger)
    assert sub["cancelled_at"] and sub["sync_status"] == "synced" and int(fake.lines[line_id]["enabled"]) == 0
    assert len(fake.lines) == 1
    assert sent(ledger) == ["activation", "renewal", "refund"]  # revoked: no cancellation email on top


def test_outputs_narrowed_in_the_config_are_sent_and_verified(tmp_path):
    with FakeXuiAdmin() as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url)
        toml = cfg.path.read_text().replace("timeout_s = 2", 'timeout_s = 2\noutputs = ["ts", "m3u8"]')
        cfg.path.write_text(toml)
        cfg = load_config(cfg.path)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        [line] = fake.lines.values()
        assert line["allowed_outputs"] == [1, 2]
        assert buyer_login(ledger, cfg, fake).outputs == ("m3u8", "ts")
        line["allowed_outputs"] = [3]  # changed on the panel: the next sync puts it back
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid=paid_now()))
        run_process(cfg)
        assert fake.lines[line["id"]]["allowed_outputs"] == [1, 2]


def test_dry_run_plans_one_package_per_renewal_and_buys_nothing(tmp_path):
    from iptvsync.engine.plan import plan_process

    with FakeXuiReseller() as fake:
        cfg = panel_install(tmp_path, "xui-reseller", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid=paid_now()))
        plan = plan_process(cfg)
        assert plan["sync_failures"] == 0 and [c["call"] for c in plan["calls"]] == ["update"]
        assert fake.credits == 9 and fake.count("edit_line") == 0


def test_refund_disables_the_line(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    run_process(cfg)
    deliver(ledger, payload(4, paid=paid_now()))
    run_process(cfg)
    [line] = fake.lines.values()
    assert int(line["enabled"]) == 0 and sub_row(ledger)["applied_enabled"] == 0
    assert sent(ledger) == ["activation", "refund"]


def test_panel_down_for_several_runs_then_back(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    fake.down = True
    for attempt in (1, 2, 3):
        summary = run_process(cfg)
        assert summary["sync"]["failed"] == 1 and summary["mail"]["sent"] == 0
        assert sub_row(ledger)["attempts"] == attempt and sub_row(ledger)["sync_status"] == "pending"
        backoff_elapsed(ledger)
    assert fake.lines == {}
    fake.down = False
    run_process(cfg)
    run_process(cfg)
    assert len(fake.lines) == 1 and sub_row(ledger)["sync_status"] == "synced"
    assert sent(ledger) == ["activation"]
    if kind == "xui-reseller":
        assert fake.credits == 9


def test_success_without_change_is_caught_by_the_read_back(tmp_path):
    with FakeXuiAdmin() as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        [line_id] = fake.lines
        fake.ignore_writes = True  # "STATUS_SUCCESS", nothing stored
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid=paid_now()))
        summary = run_process(cfg)
        sub = sub_row(ledger)
        assert summary["sync"]["failed"] == 1 and sub["sync_status"] == "pending"
        assert "mismatch" in sub["last_error"]
        assert sent(ledger) == ["activation"]  # no renewal email for an unverified extension
        fake.ignore_writes = False
        backoff_elapsed(ledger)
        run_process(cfg)
        sub = sub_row(ledger)
        assert sub["sync_status"] == "synced"
        assert int(fake.lines[line_id]["exp_date"]) == sub["desired_expires_at"]
        assert sent(ledger) == ["activation", "renewal"]


def test_reseller_out_of_credits_is_dead_with_a_clear_reason(tmp_path):
    with FakeXuiReseller(credits=0) as fake:
        cfg = panel_install(tmp_path, "xui-reseller", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        summary = run_process(cfg)
        sub = sub_row(ledger)
        assert summary["sync"]["dead"] == 1 and sub["sync_status"] == "dead"
        assert "STATUS_INSUFFICIENT_CREDITS" in sub["last_error"]
        assert fake.lines == {} and fake.credits == 0
        assert sent(ledger) == []
        from iptvsync.ops.health import health

        assert any("dead" in p for p in health(cfg)["problems"])
        run_process(cfg)  # dead stays dead: no calls until an operator acts
        assert fake.count("create_line") == 1
        fake.credits = 5
        assert subs.retry(ledger) == (1, 0)  # one subscription, no email to requeue
        run_process(cfg)
        assert len(fake.lines) == 1 and fake.credits == 4 and sent(ledger) == ["activation"]


def test_ambiguous_create_is_read_back_not_repeated(installed):
    kind, fake, cfg, ledger = installed
    deliver(ledger, payload(2, paid=paid_now()))
    if kind == "xui-reseller":  # no stored line id yet: only a working search finds it (not XC_VM's)
        fake.api_search = True
    fake.stall_s = 3  # longer than timeout_s = 2: the create lands, the reply does not
    fake.fail_next(1, "timeout_after_write", action="user.create" if kind == "xtream-codes" else "create_line")
    run_process(cfg)
    backoff_elapsed(ledger)
    run_process(cfg)
    assert len(fake.lines) == 1
    assert sub_row(ledger)["sync_status"] == "synced"
    if kind == "xui-reseller":
        assert fake.credits == 9


def process_purchases(tmp_path, fake, *, count: int, concurrency: int) -> dict:
    """``count`` first charges, each its own sale and subscription, through one ``process`` run
    against ``fake`` (an XUI admin panel) with ``max_concurrency = concurrency``."""
    cfg = panel_install(tmp_path, "xui-admin", fake.url, concurrency=concurrency)
    ledger = Ledger(cfg.ledger_path)
    for i in range(count):
        deliver(ledger, payload(2, sale=f"6200{i:04d}", subscription=f"88{i}", paid=paid_now(),
                                email=f"b{i}@example.com"))
    return run_process(cfg)


def test_concurrency_is_bounded_by_max_concurrency(tmp_path):
    with FakeXuiAdmin() as fake:
        fake.latency_s = 0.05
        summary = process_purchases(tmp_path, fake, count=12, concurrency=3)
        assert summary["sync"]["synced"] == 12
        assert 1 < fake.max_inflight <= 3
        assert len(fake.lines) == 12


def test_connections_are_kept_alive_up_to_max_concurrency(tmp_path, caplog):
    """One kept-alive connection per concurrent caller: requests' default pool keeps 10, so at
    16 the calls beyond it would open (and on HTTPS, handshake) a new connection every time."""
    with FakeXuiAdmin() as fake:
        fake.latency_s = 0.02
        summary = process_purchases(tmp_path, fake, count=48, concurrency=16)
        assert summary["sync"]["synced"] == 48
        assert len(fake.calls) >= 3 * 48  # look up, create, read back
        assert fake.max_inflight > 10  # more callers at once than requests' default pool
        assert fake.connections <= 16
        assert "pool is full" not in caplog.text


def test_breaker_stops_calls_to_a_failing_panel_for_the_run(tmp_path):
    with FakeXuiAdmin() as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url, concurrency=1)
        ledger = Ledger(cfg.ledger_path)
        for i in range(6):
            deliver(ledger, payload(2, sale=f"6300{i:04d}", subscription=f"99{i}", paid=paid_now()))
        fake.down = True
        summary = run_process(cfg)
        assert summary["sync"]["failed"] == 3 and summary["sync"]["skipped"] == 3
        assert ledger.one("SELECT COUNT(*) n FROM subscriptions WHERE attempts = 0")["n"] == 3


def test_dead_after_max_attempts_then_operator_retry(tmp_path):
    with FakeXuiAdmin() as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        fake.down = True
        for _ in range(cfg.policy.max_attempts):
            run_process(cfg)
            backoff_elapsed(ledger)
        sub = sub_row(ledger)
        assert sub["sync_status"] == "dead" and sub["attempts"] == cfg.policy.max_attempts
        fake.down = False
        run_process(cfg)
        assert fake.lines == {}  # dead means no more calls by itself
        subs.retry(ledger)
        run_process(cfg)
        assert len(fake.lines) == 1 and sent(ledger) == ["activation"]


def test_panel_secrets_stay_out_of_errors_and_audit(tmp_path):
    with FakeXuiAdmin(api_key="the-real-key-0123456789") as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url, api_key="a-wrong-key-9876543210")
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        sub = sub_row(ledger)
        assert sub["sync_status"] == "dead" and "Invalid API key" in sub["last_error"]
        from iptvsync.credentials import decrypt

        password = decrypt(sub["password_enc"], cfg.secrets.secret_key)
        dump = "\n".join(str(r) for r in ledger.query("SELECT * FROM audit")) + sub["last_error"]
        assert password not in dump and "a-wrong-key-9876543210" not in dump


# -- crash safety: a real process killed between the panel's write and the ledger commit --------

def run_cli(cfg, *args, timeout=60):
    env = {**os.environ, "IPTVSYNC_CONFIG": str(cfg.path)}
    return subprocess.Popen([sys.executable, "-m", "iptvsync", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(fake, action: str):
    """SIGKILL the running `process` right after the panel stored ``action``, before it replies."""
    victim: dict = {}

    def hook(done_action):
        if done_action == action and "pid" in victim:
            pid = victim.pop("pid")
            os.kill(pid, signal.SIGKILL)
            # the reply must never reach the client: send it only once the client is dead
            wait_for(lambda: not running(pid), "the killed process to die")

    fake.after_write = hook
    return victim


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kill_after_panel_create_then_rerun_makes_one_line(tmp_path, kind):
    with KINDS[kind]() as fake:
        cfg = panel_install(tmp_path, kind, fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        create = "user.create" if kind == "xtream-codes" else "create_line"
        if kind == "xui-reseller":  # no stored line id yet: only a working search finds it
            fake.api_search = True
        victim = kill_after(fake, create)
        proc = run_cli(cfg, "process")
        victim["pid"] = proc.pid
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert len(fake.lines) == 1 and sub_row(ledger)["sync_status"] == "pending"  # ledger never heard
        assert sent(ledger) == []
        rerun = run_cli(cfg, "process")
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert len(fake.lines) == 1 and fake.count(create) == 1
        assert sub_row(ledger)["sync_status"] == "synced" and sent(ledger) == ["activation"]
        if kind == "xui-reseller":
            assert fake.credits == 9


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kill_after_panel_extension_then_rerun_extends_once(tmp_path, kind):
    with KINDS[kind]() as fake:
        cfg = panel_install(tmp_path, kind, fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        [line_id] = fake.lines
        before = int(fake.lines[line_id]["exp_date"])
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid=paid_now()))
        edit = "user.edit" if kind == "xtream-codes" else "edit_line"
        victim = kill_after(fake, edit)
        proc = run_cli(cfg, "process")
        victim["pid"] = proc.pid
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        extended = int(fake.lines[line_id]["exp_date"])
        assert extended - before >= 29 * 86400
        rerun = run_cli(cfg, "process")
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert int(fake.lines[line_id]["exp_date"]) == extended  # not a second time
        assert len(fake.lines) == 1 and sub_row(ledger)["sync_status"] == "synced"
        if kind == "xui-reseller":
            assert fake.credits == 8
        assert sent(ledger) == ["activation", "renewal"]


def test_unpaid_subscription_never_touches_the_panel(tmp_path):
    with FakeXuiAdmin() as fake:
        cfg = panel_install(tmp_path, "xui-admin", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(1, paid=paid_now()))  # boleto issued, not paid
        summary = run_process(cfg)
        assert summary["sync"]["synced"] == 1 and fake.calls == []
        sub = sub_row(ledger)
        assert sub["sync_status"] == "synced" and sub["password_enc"] is None


def test_a_line_created_late_never_ends_before_what_was_paid(tmp_path):
    """Paid 20 days before the line could be made (an outage, or `reconcile monetizze`): the
    package runs from the create, so the renewal leaves the line 10 days short of paid_until.
    The old "half a package" rule bought nothing and the line expired while paid; now only
    a short calendar month is tolerated (reseller_api.php:954-961)."""
    with FakeXuiReseller(credits=10) as fake:
        cfg = panel_install(tmp_path, "xui-reseller", fake.url)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now(-20)))
        run_process(cfg)
        deliver(ledger, payload(2, sale="51000002", parcela=2, paid=paid_now()))
        run_process(cfg)
        sub = sub_row(ledger)
        [line] = fake.lines.values()
        assert sub["sync_status"] == "synced" and fake.credits == 8
        assert line["exp_date"] >= int(parse_iso(sub["paid_until"]).timestamp())
