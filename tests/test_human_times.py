"""Times as operators read them: São Paulo with the UTC offset, in read-back errors and plans."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from freezegun import freeze_time
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import human
from iptvsync.engine.sync import expiry_mismatch
from iptvsync.ledger.db import Ledger

_register()
NOON_SP = int(datetime(2027, 1, 30, 15, 0, tzinfo=UTC).timestamp())  # 12:00 in São Paulo


def test_human_time_has_the_offset():
    assert human(NOON_SP) == "2027-01-30 12:00 -03"
    assert human("2026-11-20T17:37:57Z") == "2026-11-20 14:37 -03"
    assert human(None) == ""


def test_a_read_back_off_by_whole_hours_points_at_the_timezone():
    assert expiry_mismatch(NOON_SP, NOON_SP + 3 * 3600) == (
        "expiry 2027-01-30 12:00 -03, panel has 15:00 -03: 3 h off, check the API user's timezone"
        " (expiries are sent in UTC)")
    assert expiry_mismatch(NOON_SP, NOON_SP - 2 * 86400) == (
        "expiry 2027-01-30 12:00 -03, panel has 2027-01-28 12:00 -03: 2.0 days earlier")


@freeze_time("2026-11-20T18:00:00Z")
def test_dry_run_why_column_shows_human_times(install, cfg):
    deliver(Ledger(cfg.ledger_path), payload(2))
    result = CliRunner().invoke(app, ["--config", str(install), "process", "--dry-run", "--json"])
    [call] = json.loads(result.stdout)["calls"]
    assert call["call"] == "create" and "expires 2026-12-23 14:37 -03" in call["why"]
