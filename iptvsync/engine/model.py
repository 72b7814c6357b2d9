"""Pure rules: how a charge's status moves, what ``paid_until`` is, what a line should be.

No I/O here, so the rules can be tested (and property-tested) on their own.

Charge status precedence (a status only ever moves up this list, so the same events in any
order end in the same state)::

    waiting < cancelled < paid < complete < blocked < reinstated < refunded

"complete" (event 6) is the same sale re-sent ~30 days after approval: it pays exactly like
"paid", so seeing it first (approval lost) still grants the period, and seeing it after
"paid" changes nothing. A dispute ("blocked") outranks both; a refund ends everything.
"reinstated" is the one move that depends on order: a blocked charge that later arrives paid
(Finalizada/Completa) won its dispute, and pays again. A second dispute of a reinstated
charge is not seen (UNCONFIRMED that Monetizze sends one: docs/process.md).
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import NamedTuple

CHARGE_RANK = {"waiting": 1, "cancelled": 2, "paid": 3, "complete": 4, "blocked": 5, "reinstated": 6,
               "refunded": 7}
KIND_TO_CHARGE = {"waiting": "waiting", "approved": "paid", "complete": "complete",
                  "cancelled": "cancelled", "refunded": "refunded", "blocked": "blocked"}
#: statuses whose period counts towards paid_until (a disputed charge still counts, but the
#: dispute suspends the line under policy on_dispute = "suspend")
PAYING = ("paid", "complete", "blocked", "reinstated")
#: a blocked charge that arrives as one of these afterwards won its dispute
REINSTATING = ("paid", "complete")


class Period(NamedTuple):
    """A paid (or granted) stretch of access. A tuple, and in this field order, because
    ``paid_until`` folds them sorted by (start, key): the key is unique, so equal timestamps
    still fold in one order (the fold runs for every postback applied)."""

    start_at: datetime  # when it was paid (or granted)
    key: str  # tie-breaker: "c:<charge key>" or "g:<grant key>"
    days: int
    months: int = 0  # calendar months, added after the days


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the month's end (Jan 31 -> Feb 28)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = moment.day if moment.day <= 28 else min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def paid_until(periods: list[Period]) -> datetime | None:
    """Each period adds its days (and calendar months) to ``max(previous paid_until, paid_at)``."""
    until = None
    for start_at, _, days, months in sorted(periods):
        until = (start_at if until is None or start_at > until else until) + timedelta(days=days)
        if months:
            until = add_months(until, months)
    return until


class SubFacts(NamedTuple):
    """What the ledger knows about a subscription, gathered for ``desired_state``. (Named
    tuples, this and ``Desired``: made for every postback applied, and a frozen dataclass
    costs ~1 ms of every command's start to generate.)"""

    paid_until: datetime | None
    recurring: bool
    cancelled: bool
    cancel_mode: str | None  # end_of_period | immediately
    disputed: bool  # a blocked charge not followed by a later paid one
    hold: str | None  # operator: suspended | resumed
    grace_days: int
    on_dispute: str  # suspend | ignore
    refunded: bool = False  # some charge was refunded


class Desired(NamedTuple):
    enabled: bool
    access_until: datetime | None
    reason: str  # why (for audit and `subs show`)
    paid_until: datetime | None = None  # what it was derived from (``subs show``'s paid_until, no grace)


def access_until(f: SubFacts) -> datetime | None:
    """The line's expiry: paid_until, plus grace while a recurring charge may still come."""
    if f.paid_until is None:
        return None
    if f.recurring and not f.cancelled:
        return f.paid_until + timedelta(days=f.grace_days)
    return f.paid_until


#: what ``subs list`` shows and filters by; ``subscription_state`` picks one
STATES = ("active", "grace", "suspended", "disputed", "cancelled", "expired", "refunded", "unpaid")


def subscription_state(f: SubFacts, now: datetime) -> str:
    """One word for where a subscription stands, for operators (the line follows ``desired_state``).

    active: paid and running; grace: past ``paid_until``, inside ``grace_days`` while a renewal
    may still come; suspended: by an operator; disputed: a chargeback not settled by a later
    payment (nor resumed by an operator); cancelled: no more renewals, access to the end of the
    period (or cut at once); expired: the paid time ran out; refunded: nothing paid remains
    after a refund; unpaid: nothing was ever paid (a boleto or Pix still waiting).
    """
    until = access_until(f)
    if until is None:
        return "refunded" if f.refunded else "unpaid"
    if f.hold == "suspended":
        return "suspended"
    if f.disputed and f.hold != "resumed":
        return "disputed"
    if f.cancelled and (f.cancel_mode == "immediately" or now < until):
        return "cancelled"
    if now >= until:
        return "expired"
    if f.paid_until is not None and now >= f.paid_until:
        return "grace"
    return "active"


def desired_state(f: SubFacts, now: datetime) -> Desired:
    until = access_until(f)
    enabled, reason = _decide(f, until, now)
    return Desired(enabled, until, reason, f.paid_until)


def _decide(f: SubFacts, until: datetime | None, now: datetime) -> tuple[bool, str]:
    if until is None:
        return False, "nothing paid"
    if f.hold == "suspended":
        return False, "suspended by operator"
    if f.disputed and f.on_dispute == "suspend" and f.hold != "resumed":
        return False, "payment disputed"
    if f.cancelled and f.cancel_mode == "immediately":
        return False, "subscription cancelled"
    if now >= until:
        return False, "expired"
    return True, "paid"

