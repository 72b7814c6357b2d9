"""``process`` serves a fresh payment before bulk work, and does bulk work in bounded slices.

Proved by the order of the calls a panel receives, never by timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from support.postbacks import payload

from iptvsync.engine.apply import apply_inbox
from iptvsync.engine.runner import run_process
from iptvsync.engine.sync import store_new_credentials
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.inbox import inbox_row, store_rows
from iptvsync.ledger.queue import MailStatus, SyncStatus
from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import parse
from iptvsync.panels.dry_run import DryRunPanel

FORM = "application/x-www-form-urlencoded"
WAVE = 5000
PAID = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)  # the wave's one payment: 30 days + 3 of grace
LATER = PAID + timedelta(days=40)  # every line of the wave has expired


class RecordingPanel(DryRunPanel):
    """The dry-run panel (in memory) that remembers the order of the calls it answered, and can
    store a postback in the ledger when it answers the n-th update (a buyer paying mid-wave)."""

    def __init__(self):
        super().__init__("main")
        self.calls: list[tuple[str, str, bool | None]] = []
        self.on_update: dict[int, object] = {}

    def get(self, username, password, line_id=None):
        self.calls.append(("get", username, None))
        return super().get(username, password, line_id)

    def create(self, spec):
        self.calls.append(("create", spec.username, spec.enabled))
        return super().create(spec)

    def update(self, line, spec):
        self.calls.append(("update", spec.username, spec.enabled))
        hook = self.on_update.pop(sum(c[0] == "update" for c in self.calls), None)
        if hook:
            hook()
        return super().update(line, spec)


def store_postbacks(ledger: Ledger, payloads: list[dict]) -> None:
    """Store postbacks as the receiver does, in one transaction (one fsync for the lot)."""
    rows = []
    for p in payloads:
        body = build_form(p)
        rows.append(inbox_row(parse(body, FORM)[1], body, content_type=FORM, remote_addr="127.0.0.1"))
    with ledger.tx() as conn:
        store_rows(conn, rows)


def buyer(i: int, paid: datetime) -> dict:
    return payload(2, sale=f"7{i:07d}", subscription=f"8{i:07d}", email=f"buyer{i}@example.com",
                   paid=paid.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def store_buyers(ledger: Ledger, size: int, paid: datetime) -> None:
    """``store_postbacks`` of ``buyer(i, paid)`` for i < size, the form of each made from the first
    one's by swapping its codes and email (PHP's form encoding, char by char, took most of the
    5000-line wave's setup); each body is still parsed as the receiver parses it, and checked."""
    first = build_form(buyer(0, paid))
    tokens = (b"70000000", b"80000000", b"buyer0%40example.com")
    assert all(first.count(t) >= 2 for t in tokens)  # in the fields and in the json field
    rows = []
    for i in range(size):
        body = first
        for token, value in zip(tokens, (f"7{i:07d}", f"8{i:07d}", f"buyer{i}%40example.com"), strict=True):
            body = body.replace(token, value.encode())
        pb = parse(body, FORM)[1]
        assert (pb.sale_code, pb.subscription_code, pb.buyer_email) == (f"7{i:07d}", f"8{i:07d}",
                                                                         f"buyer{i}@example.com")
        rows.append(inbox_row(pb, body, content_type=FORM, remote_addr="127.0.0.1"))
    with ledger.tx() as conn:
        store_rows(conn, rows)


@pytest.fixture
def wave(cfg, request):
    """``size`` (default WAVE) subscriptions paid once on PAID, their lines enabled on the panel and their
    activation emails sent: at LATER they all expire together."""
    size = getattr(request, "param", WAVE)
    panel = RecordingPanel()
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(PAID + timedelta(minutes=5)):
        store_buyers(ledger, size, PAID)
        assert apply_inbox(ledger, cfg, PAID + timedelta(minutes=5))["applied"] == size
        subs = ledger.query("SELECT * FROM subscriptions")
        store_new_credentials(ledger, cfg, subs)
    # the lines as a previous run left them: on the panel, enabled, verified
    from iptvsync.credentials import decrypt
    from iptvsync.engine.sync import spec_for

    with ledger.tx() as conn:
        for sub in ledger.query("SELECT * FROM subscriptions"):
            spec = spec_for(sub, cfg, sub["username"], decrypt(sub["password_enc"], cfg.secrets.secret_key), PAID)
            line = DryRunPanel.create(panel, spec)
            conn.execute("UPDATE subscriptions SET sync_status = :s, line_id = :l, applied_enabled = 1,"
                         " applied_expires_at = desired_expires_at WHERE id = :id",
                         {"s": SyncStatus.SYNCED, "l": line.line_id, "id": sub["id"]})
        conn.execute("UPDATE outbox SET status = :s", {"s": MailStatus.SENT})
    yield panel, ledger, size
    ledger.close()


def username_of(ledger: Ledger, email: str) -> str:
    return ledger.one("SELECT username FROM subscriptions WHERE buyer_email = ?", (email,))["username"]


def test_a_fresh_payment_is_synced_and_mailed_before_a_5000_line_expiry_wave(cfg, wave):
    panel, ledger, _ = wave
    with freeze_time(LATER):
        store_postbacks(ledger, [buyer(WAVE, LATER - timedelta(minutes=1))])
        summary = run_process(cfg, panels={"main": panel}, bulk_calls=400, sweep_limit=None)
    fresh = username_of(ledger, f"buyer{WAVE}@example.com")
    assert panel.calls[:2] == [("get", fresh, None), ("create", fresh, True)]
    disables = [c for c in panel.calls[2:] if c[0] == "update"]
    assert disables and all(enabled is False for _, _, enabled in disables)
    assert len(panel.calls) <= 2 + 400 + 2 * cfg.panels["main"].max_concurrency  # one slice of the wave
    assert summary["sweep"]["expired"] == WAVE and summary["bulk"]["deferred"] == WAVE - len(disables)
    # the buyer's access email went out in the fresh round, before the wave's expiry emails
    first_expired = ledger.one("SELECT MIN(id) AS id FROM audit WHERE action = 'email.sent'"
                               " AND detail LIKE '%\"kind\": \"expired\"%'")["id"]
    fresh_sent = ledger.one("SELECT id FROM audit WHERE action = 'email.sent' AND buyer_email = :e",
                            {"e": f"buyer{WAVE}@example.com"})["id"]
    assert first_expired is None or fresh_sent < first_expired


SMALL = 300  # the same order on a smaller wave: these tests count calls, not the wave's size


@pytest.mark.parametrize("wave", [SMALL], indirect=True)
def test_a_payment_arriving_mid_wave_is_served_before_the_rest_of_the_wave(cfg, wave):
    panel, ledger, size = wave
    late = Ledger(cfg.ledger_path)  # the receiver's connection
    committed_after: list[int] = []  # updates answered when the postback's commit returned

    def pay() -> None:
        store_postbacks(late, [buyer(size + 1, LATER)])  # may wait for the write lock meanwhile
        committed_after.append(sum(c[0] == "update" for c in panel.calls))

    panel.on_update[100] = pay
    with freeze_time(LATER):
        summary = run_process(cfg, panels={"main": panel}, bulk_calls=3 * size, sweep_limit=None)
    late.close()
    newcomer = username_of(ledger, f"buyer{size + 1}@example.com")
    created = panel.calls.index(("create", newcomer, True))
    updates_before = sum(c[0] == "update" for c in panel.calls[:created])
    concurrency = cfg.panels["main"].max_concurrency
    # once it was committed, only the lines already taken went first: those in flight, and up
    # to Budget.check_every more
    assert 100 <= committed_after[0] <= updates_before <= committed_after[0] + 4 + 2 * concurrency
    assert summary["bulk"]["preempted"] == 1 and summary["sync"]["synced"] == size + 1
    assert sum(c[0] == "update" for c in panel.calls) == size  # the wave went on afterwards


@pytest.mark.parametrize("wave", [SMALL], indirect=True)
def test_bulk_work_stops_at_its_budget_and_the_next_run_goes_on(cfg, wave):
    panel, ledger, size = wave
    with freeze_time(LATER):
        first = run_process(cfg, panels={"main": panel}, bulk_calls=100, sweep_limit=None)
        assert first["sweep"]["expired"] == size
        assert 100 <= len(panel.calls) <= 100 + 2 * cfg.panels["main"].max_concurrency
        assert first["bulk"]["deferred"] == size - first["sync"]["synced"] > 0
        runs = 1
        while ledger.one("SELECT COUNT(*) n FROM subscriptions WHERE sync_status = :s",
                         {"s": SyncStatus.PENDING})["n"] and runs < 10:
            run_process(cfg, panels={"main": panel}, bulk_calls=100, sweep_limit=None)
            runs += 1
    # get + update per line: 50 lines a run, one run more for the last calls in flight at most
    assert runs in (6, 7) and sum(c[0] == "update" for c in panel.calls) == size


@pytest.mark.parametrize("wave", [SMALL], indirect=True)
def test_the_sweep_takes_at_most_its_limit_per_run(cfg, wave):
    panel, ledger, size = wave
    with freeze_time(LATER):
        runs = [run_process(cfg, panels={"main": panel}, sweep_limit=120) for _ in range(3)]
    assert [s["sweep"]["expired"] for s in runs] == [120, 120, size - 240]
    assert [s["bulk"]["more_expiries"] for s in runs] == [True, True, False]


def test_serve_processes_a_postback_as_soon_as_it_is_stored(install, cfg):
    """No clock in between: ``serve --process-on-postback`` has no --process-every, so only the
    stored postback can have started the run that made the line and sent the email."""
    from support.install import wait_for
    from support.receiver import Receiver

    server = Receiver(install, "--process-on-postback")
    try:
        paid = datetime.now(UTC) - timedelta(minutes=1)
        body = build_form(buyer(1, paid))
        assert server.post(body, FORM).status_code == 200
        mail = cfg.ledger_path.parent / "mail"
        emails = wait_for(lambda: list(mail.glob("*.eml")) if mail.exists() else [], "the access email")
        assert len(emails) == 1 and b"buyer1@example.com" in emails[0].read_bytes()
        panel = DryRunPanel("main", state_dir=cfg.ledger_path.parent)
        assert [line["enabled"] for line in panel.lines().values()] == [True]
        panel.close()
    finally:
        returncode = server.stop()
    assert returncode == 0


@pytest.mark.parametrize("wave", [7], indirect=True)
def test_reconcile_panel_pages_through_the_lines(cfg, wave, monkeypatch):
    from iptvsync.ops import reconcile

    panel, ledger, size = wave
    monkeypatch.setattr(reconcile, "PAGE", 3)
    rows = reconcile.check_panels(ledger, cfg, {"main": panel}, PAID + timedelta(days=1))
    first = next(rows)
    assert len(panel.calls) == 3  # one page read, not every line
    rest = list(rows)
    assert len(panel.calls) == size and [first, *rest] == sorted([first, *rest], key=lambda r: r["subscription"])
    report = reconcile.reconcile_panels(ledger, cfg, {"main": panel}, PAID + timedelta(days=1))
    assert (report["checked"], report["in_sync"], report["subscriptions"]) == (size, size, [])


@pytest.mark.parametrize("wave", [SMALL], indirect=True)
def test_the_sweep_stops_between_batches_when_a_payment_waits(cfg, wave):
    from iptvsync.engine.sweep import EXPIRY_BATCH, sweep

    _, ledger, size = wave
    asked = []
    with freeze_time(LATER):
        counts = sweep(ledger, cfg, LATER, preempt=lambda: asked.append(1) or True)
        rest = sweep(ledger, cfg, LATER)
    assert (counts["expired"], len(asked)) == (EXPIRY_BATCH, 1)  # one batch, then it gave way
    assert rest["expired"] == size - EXPIRY_BATCH


@pytest.mark.parametrize("wave", [SMALL], indirect=True)
def test_bulk_email_gives_way_to_a_payment(cfg, wave):
    """The wave's expiry emails are bulk work too: a buyer paying while they go out gets the
    access email right after the one in hand."""
    panel, ledger, size = wave
    late = Ledger(cfg.ledger_path)

    class Backend:  # records the recipients in order; a buyer pays as the 10th email goes out
        def __init__(self):
            self.sent: list[str] = []

        def send(self, msg):
            self.sent.append(str(msg["To"]))
            if len(self.sent) == 10:
                store_postbacks(late, [buyer(size + 2, LATER)])

    backend = Backend()
    with freeze_time(LATER):
        summary = run_process(cfg, panels={"main": panel}, bulk_calls=3 * size, mail_backend=backend)
    late.close()
    newcomer = next(i for i, to in enumerate(backend.sent) if f"buyer{size + 2}@example.com" in to)
    assert newcomer == 10 and summary["bulk"]["preempted"] == 1
    assert len(backend.sent) > 20  # and the expiry emails went on afterwards
