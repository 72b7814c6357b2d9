"""``subscription_state``: one word per subscription for `subs list` (a pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iptvsync.engine.model import STATES, SubFacts, subscription_state

PAID_UNTIL = datetime(2026, 12, 20, 17, 37, tzinfo=UTC)
BASE = SubFacts(paid_until=PAID_UNTIL, recurring=True, cancelled=False, cancel_mode=None, disputed=False, hold=None,
                grace_days=3, on_dispute="suspend")
BEFORE, IN_GRACE, AFTER = PAID_UNTIL - timedelta(days=1), PAID_UNTIL + timedelta(days=1), PAID_UNTIL + timedelta(days=4)


@pytest.mark.parametrize(("facts", "at", "state"), [
    (BASE, BEFORE, "active"),
    (BASE, IN_GRACE, "grace"),
    (BASE, AFTER, "expired"),
    (BASE._replace(recurring=False), IN_GRACE, "expired"),  # a one-off plan has no grace
    (BASE._replace(hold="suspended"), BEFORE, "suspended"),
    (BASE._replace(disputed=True), BEFORE, "disputed"),
    (BASE._replace(disputed=True, hold="resumed"), BEFORE, "active"),
    (BASE._replace(cancelled=True, cancel_mode="end_of_period"), BEFORE, "cancelled"),
    (BASE._replace(cancelled=True, cancel_mode="end_of_period"), IN_GRACE, "expired"),  # no grace once cancelled
    (BASE._replace(cancelled=True, cancel_mode="immediately"), AFTER, "cancelled"),
    (BASE._replace(paid_until=None, refunded=True), BEFORE, "refunded"),
    (BASE._replace(paid_until=None), BEFORE, "unpaid"),
    (BASE._replace(hold="suspended", disputed=True), BEFORE, "suspended"),
])
def test_state(facts, at, state):
    assert subscription_state(facts, at) == state
    assert state in STATES
