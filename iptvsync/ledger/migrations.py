"""Ledger schema as small named migrations. Never edit one that has shipped: add another."""


class LazyMigrations:
    """A ``sqlite_utils.Migrations`` set that imports sqlite_utils only when it is used.

    Every command opens the ledger and asks whether a migration is pending: ``pending_names``
    answers that from the ``_sqlite_migrations`` table with plain sqlite3, so a command whose
    ledger is up to date never pays sqlite_utils' ~35 ms import. Anything else (``apply``,
    ``applied``, ``pending``) goes to the real ``Migrations``, built on first use.
    """

    table = "_sqlite_migrations"

    def __init__(self, name: str):
        self.name = name
        self._functions: list = []
        self._real = None

    def __call__(self, *, name: str | None = None, transactional: bool = True):
        def register(func):
            self._functions.append((name or func.__name__, func, transactional))
            return func
        return register

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._functions]

    def pending_names(self, conn) -> list[str]:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)).fetchone():
            done = {row[0] for row in conn.execute(f"SELECT name FROM {self.table} WHERE migration_set = ?",
                                                   (self.name,))}
        else:
            done = set()
        return [name for name in self.names if name not in done]

    def real(self):
        if self._real is None:
            from sqlite_utils import Migrations

            real = Migrations(self.name)
            for name, func, transactional in self._functions:
                real(name=name, transactional=transactional)(func)
            self._real = real
        return self._real

    def __getattr__(self, attr):  # apply, applied, pending …
        return getattr(self.real(), attr)


migrations = LazyMigrations("iptvsync")


@migrations()
def m001_inbox(db):
    db.execute("""
        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'postback',    -- postback | reconcile | simulate
            remote_addr TEXT,
            content_type TEXT,
            body BLOB NOT NULL,                         -- raw body, chave_unica blanked
            dedupe_key TEXT NOT NULL UNIQUE,
            event INTEGER,
            kind TEXT NOT NULL,
            sale_code TEXT,
            subscription_code TEXT,
            parcela INTEGER,
            product_code TEXT,
            plan_code TEXT,
            plan_ref TEXT,
            buyer_email TEXT,
            paid_at TEXT,
            is_test INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',     -- pending | applied | ignored | unmapped | failed
            reason TEXT,
            times_seen INTEGER NOT NULL DEFAULT 1,
            last_seen_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after TEXT,
            applied_at TEXT
        )""")
    db.execute("CREATE INDEX inbox_status ON inbox(status, run_after)")
    db.execute("CREATE INDEX inbox_sale ON inbox(sale_code)")
    db.execute("CREATE INDEX inbox_email ON inbox(buyer_email)")
    # Rejected requests are counted, never stored: one row per day, HTTP status and fixed reason.
    db.execute("""
        CREATE TABLE rejections (
            day TEXT NOT NULL,
            status INTEGER NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            last_at TEXT NOT NULL,
            last_remote TEXT,
            PRIMARY KEY (day, status, reason)
        )""")


@migrations()
def m002_subscriptions(db):
    db.execute("""
        CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,            -- sub:<assinatura codigo> | sale:<venda codigo> | manual:<key>
            product_code TEXT NOT NULL,
            product_name TEXT,
            plan_code TEXT,
            panel TEXT NOT NULL,
            buyer_email TEXT,
            buyer_name TEXT,
            recurring INTEGER NOT NULL DEFAULT 0,
            cancelled_at TEXT,                   -- event 103 or operator cancel
            cancel_mode TEXT,                    -- end_of_period | immediately
            hold TEXT,                           -- operator: suspended | resumed
            hold_at TEXT,
            paid_until TEXT,                     -- derived from charges + grants, never edited
            desired_enabled INTEGER NOT NULL DEFAULT 0,
            desired_expires_at INTEGER,
            username TEXT UNIQUE,
            password_enc TEXT,
            line_id TEXT,
            applied_enabled INTEGER,
            applied_expires_at INTEGER,
            applied_at TEXT,
            sync_status TEXT NOT NULL DEFAULT 'pending',  -- pending | synced | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX subs_sync ON subscriptions(sync_status, run_after)")
    db.execute("CREATE INDEX subs_email ON subscriptions(buyer_email)")
    # One row per Monetizze charge (sale code + parcela). Status only moves up its rank.
    db.execute("""
        CREATE TABLE charges (
            charge_key TEXT PRIMARY KEY,         -- <venda codigo>:<parcela>
            sale_code TEXT NOT NULL,
            parcela INTEGER,
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id),
            status TEXT NOT NULL,
            status_rank INTEGER NOT NULL,
            paid_at TEXT,
            days INTEGER NOT NULL,
            amount TEXT,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX charges_sub ON charges(subscription_id)")
    db.execute("CREATE INDEX charges_sale ON charges(sale_code)")
    # Manual grants: days given by an operator, keyed by the operator's key.
    db.execute("""
        CREATE TABLE grants (
            id INTEGER PRIMARY KEY,
            grant_key TEXT NOT NULL UNIQUE,
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id),
            days INTEGER NOT NULL,
            granted_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            note TEXT
        )""")


@migrations()
def m003_outbox_audit(db):
    db.execute("""
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id),
            kind TEXT NOT NULL,
            cycle TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            needs_sync INTEGER NOT NULL DEFAULT 0,   -- hold until the line is verified in sync
            context TEXT NOT NULL DEFAULT '{}',      -- kind-specific facts frozen at queue time
            status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            run_after TEXT,
            last_error TEXT,
            message_id TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (subscription_id, kind, cycle)
        )""")
    db.execute("CREATE INDEX outbox_status ON outbox(status, run_after)")
    db.execute("""
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subscription_id INTEGER,
            sale_code TEXT,
            buyer_email TEXT,
            detail TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX audit_sub ON audit(subscription_id)")
    db.execute("CREATE INDEX audit_email ON audit(buyer_email)")
    db.execute("CREATE INDEX audit_sale ON audit(sale_code)")
    db.execute("""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            summary TEXT
        )""")


@migrations()
def m004_calendar_months_and_attach(db):
    # A charge may buy calendar months (product period = "1 month") instead of days.
    db.execute("ALTER TABLE charges ADD COLUMN months INTEGER NOT NULL DEFAULT 0")
    # The subscription an operator attached a held postback to (`inbox attach`).
    db.execute("ALTER TABLE inbox ADD COLUMN attached_to TEXT")


@migrations()
def m005_retention_indexes(db):
    # `process` prunes old run summaries every run (ledger/retention.py): find them by date
    db.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)")


@migrations()
def m006_receiver_health(db):
    # Rejections on the postback path, per hour: `status` reports a spike of them.
    db.execute("""
        CREATE TABLE path_rejections (
            hour TEXT NOT NULL,                  -- YYYY-MM-DDTHH, UTC
            status INTEGER NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, status, reason)
        )""")
    # The receiver's writer rewrites this row when /healthz asks whether the ledger commits.
    db.execute("""
        CREATE TABLE receiver_heartbeat (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            at TEXT NOT NULL,
            pid INTEGER
        )""")


@migrations()
def m007_filter_indexes(db):
    """An index behind every filter the CLI offers, and behind the sweep's two questions."""
    db.execute("CREATE INDEX audit_at ON audit(at)")  # logs --since
    db.execute("CREATE INDEX audit_action ON audit(action, id)")  # logs --action, newest first
    db.execute("CREATE INDEX inbox_received ON inbox(received_at)")  # inbox list --since, inbox prune
    db.execute("CREATE INDEX runs_finished ON runs(finished_at)")  # status: the last run; runs pruned by age
    db.execute("CREATE INDEX subs_expiry ON subscriptions(desired_enabled, desired_expires_at)")  # sweep: expired
    db.execute("CREATE INDEX subs_paid_until ON subscriptions(desired_enabled, paid_until)")  # sweep: reminders


@migrations()
def m008_inbox_body_encoding(db):
    """Raw bodies are compressed once settled: ``body_encoding`` says how (NULL: as received)."""
    db.execute("ALTER TABLE inbox ADD COLUMN body_encoding TEXT")
    db.execute("CREATE INDEX inbox_raw ON inbox(id) WHERE body_encoding IS NULL")


@migrations()
def m009_audit_checkpoint(db):
    """Where the last ``audit verify`` stopped: the next one starts there (``--full`` ignores it)."""
    db.execute("""
        CREATE TABLE audit_checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            audit_id INTEGER NOT NULL,      -- the last row verified
            hash TEXT NOT NULL,             -- its hash, as verified
            rows INTEGER NOT NULL,          -- rows verified from the genesis up to it
            verified_at TEXT NOT NULL
        )""")


@migrations()
def m010_status_indexes(db):
    """``status`` counts this week's unclassified postbacks and the paid subscriptions without a
    usable email: by index, not a scan of the inbox and of every subscription."""
    db.execute("CREATE INDEX inbox_kind ON inbox(kind, received_at)")
    db.execute("CREATE INDEX subs_no_email ON subscriptions(id) WHERE paid_until IS NOT NULL"
               " AND (buyer_email IS NULL OR buyer_email NOT LIKE '_%@_%')")


@migrations()
def m011_apply_indexes(db):
    """Applying a postback reads its subscription's charges and grants. The charges come from
    one covering index: there a subscription's charges sit side by side, while their rows are
    spread over a year of the table (one page read each). The grants had no index at all."""
    db.execute("DROP INDEX charges_sub")
    db.execute("CREATE INDEX charges_sub ON charges(subscription_id, charge_key, status, paid_at, days, months)")
    db.execute("CREATE INDEX grants_sub ON grants(subscription_id)")


#: The audit rows ``logs --email`` cannot reach through their subscription: those about no
#: subscription, and ``inbox.attached`` (the postback's email, which an operator may have put on
#: another buyer's subscription). Every other row about a subscription carries that
#: subscription's email, which is set once and never replaced, so ``logs --email`` finds them
#: through ``subs_email`` (tests/test_ledger_scale.py holds writers to this).
AUDIT_EMAIL_ROWS = "subscription_id IS NULL OR action = 'inbox.attached'"


@migrations()
def m012_audit_email_partial(db):
    """``audit_email`` holds only ``AUDIT_EMAIL_ROWS``: every audit row was an insert on a random
    page of it (a 100k shop's apply stage ran 20-25 % faster without it, bench/README.md)."""
    db.execute("DROP INDEX audit_email")
    db.execute(f"CREATE INDEX audit_email ON audit(buyer_email) WHERE {AUDIT_EMAIL_ROWS}")


@migrations()
def m013_pending_facts(db):
    """``inbox_facts``: what the parser made of a pending row's body (``postback.facts_json``),
    written by the receiver's writer as it stores the row; the apply stage reads it instead of
    parsing the body a second time (a quarter of its work). A table of its own, not a column:
    cleared from a row, ~0.7 kB would stay as dead space in each inbox page, since new rows
    only ever go at the end; here a settled row's facts are deleted (the trigger, whichever
    path settles it) and their pages reused, so the table holds only what waits."""
    db.execute("CREATE TABLE inbox_facts (inbox_id INTEGER PRIMARY KEY REFERENCES inbox(id) ON DELETE CASCADE,"
               " facts TEXT NOT NULL)")
    db.execute("CREATE TRIGGER inbox_facts_settled AFTER UPDATE OF status ON inbox"
               " WHEN NEW.status != 'pending' BEGIN DELETE FROM inbox_facts WHERE inbox_id = NEW.id; END")


@migrations()
def m014_run_outcome(db):
    """``runs.error``: why a ``process`` run failed (NULL when it did not), so ``status`` fails
    with the reason while the last run failed (a run that dies before its end is recorded too)."""
    db.execute("ALTER TABLE runs ADD COLUMN error TEXT")


@migrations()
def m016_subscription_aliases(db):
    """Another key a subscription answers to: a renewal of an ``assinatura`` never seen,
    attached by an operator (``inbox attach``) to the buyer's existing subscription, leaves
    ``sub:<assinatura>`` here, so the next parcelas extend that line too instead of being held."""
    db.execute("CREATE TABLE subscription_aliases (key TEXT PRIMARY KEY, subscription_id INTEGER NOT NULL"
               " REFERENCES subscriptions(id), created_at TEXT NOT NULL)")


@migrations()
def m017_charge_rank_reinstated(db):
    """``reinstated`` (a blocked charge later paid: the dispute won) ranks between blocked and
    refunded (engine/model.py), so a refund's rank moves from 6 to 7."""
    db.execute("UPDATE charges SET status_rank = 7 WHERE status = 'refunded'")


@migrations()
def m019w_whatsapp_channel(db):
    """Issue 21: one outbox for every channel. ``outbox.channel`` (``email`` for every row so far)
    joins the uniqueness, so a message is one row per channel: (subscription, kind, cycle,
    channel). SQLite cannot change a table's UNIQUE: the table is rebuilt from its own schema
    as it stands (columns added by other migrations kept), its indexes and triggers recreated.
    ``sending_at`` marks a WhatsApp send in flight (set before the request, cleared with the
    outcome); ``unknowns`` counts sends whose outcome stayed unknown. Subscriptions get the
    buyer's number in E.164 (``buyer_phone``) or why there is none (``phone_issue``)."""
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()[0]
    old_unique = "UNIQUE (subscription_id, kind, cycle)"
    assert old_unique in sql, "outbox schema is not the one this migration knows"
    columns = [row[1] for row in db.execute("PRAGMA table_info(outbox)").fetchall()]
    extras = db.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'outbox' AND type IN ('index', 'trigger')"
                        " AND sql IS NOT NULL").fetchall()
    new_sql = sql.replace("CREATE TABLE outbox", "CREATE TABLE outbox_rebuilt", 1).replace(
        old_unique, "channel TEXT NOT NULL DEFAULT 'email',\n            sending_at TEXT,\n"
                    "            unknowns INTEGER NOT NULL DEFAULT 0,\n"
                    "            UNIQUE (subscription_id, kind, cycle, channel)")
    db.execute(new_sql)
    names = ", ".join(columns)
    db.execute(f"INSERT INTO outbox_rebuilt ({names}) SELECT {names} FROM outbox")
    db.execute("DROP TABLE outbox")
    db.execute("ALTER TABLE outbox_rebuilt RENAME TO outbox")
    for (statement,) in extras:
        db.execute(statement)
    db.execute("ALTER TABLE subscriptions ADD COLUMN buyer_phone TEXT")
    db.execute("ALTER TABLE subscriptions ADD COLUMN phone_issue TEXT")
    db.execute("CREATE INDEX subs_phone_issue ON subscriptions(id) WHERE phone_issue IS NOT NULL")
    db.execute("CREATE INDEX outbox_channel ON outbox(channel, status, run_after)")


@migrations()
def m019x_gateway_state(db):
    """What ``status`` says about the WhatsApp gateway without calling it: the last send it
    acknowledged, the last failure and whether it said its session was disconnected (written
    by ``process``, ``notify test`` and ``doctor``)."""
    db.execute("""
        CREATE TABLE gateway_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            gateway TEXT NOT NULL,
            last_ack_at TEXT,
            last_failure_at TEXT,
            last_failure TEXT,
            disconnected INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )""")


@migrations()
def m018_admin_operators(db):
    """The admin console's operators, their sessions and the login throttle (issue 20).

    ``operator_sessions.id_hash`` is the SHA-256 of the cookie's random 256-bit id: a copy of
    the ledger gives no one a live session. ``stage`` is ``password`` between the password and
    the TOTP step, ``full`` once logged in. ``login_throttle`` holds one row per hashed user
    name and per address with its failures and the time before which no attempt is heard."""
    db.execute("CREATE TABLE operators (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
               " role TEXT NOT NULL CHECK (role IN ('owner', 'support')), password_hash TEXT NOT NULL,"
               " totp_secret_enc TEXT, totp_last_step INTEGER NOT NULL DEFAULT 0,"
               " language TEXT NOT NULL DEFAULT 'pt-BR', created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    db.execute("CREATE TABLE operator_sessions (id_hash TEXT PRIMARY KEY,"
               " operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,"
               " stage TEXT NOT NULL CHECK (stage IN ('password', 'full')), csrf TEXT NOT NULL,"
               " client TEXT, created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL)")
    db.execute("CREATE INDEX operator_sessions_operator ON operator_sessions(operator_id)")
    db.execute("CREATE TABLE login_throttle (key TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
               " last_failure_at TEXT NOT NULL, blocked_until TEXT NOT NULL)")


@migrations()
def m019_admin_indexes(db):
    """What the admin console reads by time or by link, each through an index at 100k
    subscriptions (bench/admin.py): the Painel's paid charges (the index covers what it counts)
    and refunds by date and its cancellations, the subscription timeline's attached postbacks. Partial where only a few
    rows qualify, so the receiver's and ``process``'s inserts mostly skip them."""
    db.execute("CREATE INDEX charges_paid_at ON charges(paid_at, status, parcela) WHERE paid_at IS NOT NULL")
    db.execute("CREATE INDEX charges_refunded ON charges(updated_at) WHERE status = 'refunded'")
    db.execute("CREATE INDEX subs_cancelled ON subscriptions(cancelled_at) WHERE cancelled_at IS NOT NULL")
    db.execute("CREATE INDEX inbox_attached ON inbox(attached_to) WHERE attached_to IS NOT NULL")


@migrations()
def m022_panel_state(db):
    """Each panel as its last live check saw it (``doctor`` and the console's "check panels"):
    the verdict, its detail and the reseller's credits, so the Painel shows health and credits
    without calling the panel on every page view (issue 20)."""
    db.execute("CREATE TABLE panel_state (panel TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT,"
               " credits REAL, checked_at TEXT NOT NULL)")
