"""Postbacks that ``apply`` holds for an operator, because applying them could make a second
line, and the aliases that let a held renewal's later parcelas find the buyer's subscription."""

from __future__ import annotations

import sqlite3

from ..monetizze.postback import Postback


class Held(Exception):
    """A postback an operator must place (``inbox attach``): applying it could double a line."""


def hold_if_second_line(conn: sqlite3.Connection, pb: Postback, key: str) -> None:
    """A recurring plan's postback without ``assinatura`` for a buyer who already holds that
    product's subscription would make a second line: held for ``inbox attach`` instead."""
    if pb.subscription_code or not pb.periodicity or not pb.buyer_email or pb.line_item:
        return
    if conn.execute("SELECT 1 FROM subscriptions WHERE key = :key", {"key": key}).fetchone():
        return  # this sale's own subscription: not a second line
    held = conn.execute("SELECT id, key FROM subscriptions WHERE product_code = :product AND buyer_email = :email"
                        " ORDER BY id DESC LIMIT 1",
                        {"product": pb.product_code, "email": pb.buyer_email}).fetchone()
    if held:
        raise Held(f"recurring plan without assinatura: {pb.buyer_email} already holds subscription "
                   f"{held['id']} ({held['key']}) of product {pb.product_code}; "
                   f"`iptvsync inbox attach <id> {held['id']}` to renew it")


def aliased(conn: sqlite3.Connection, key: str | None) -> str | None:
    """The key of the subscription ``key`` was attached to (``subscription_aliases``), if any."""
    if not key:
        return None
    row = conn.execute("SELECT s.key FROM subscription_aliases a JOIN subscriptions s ON s.id = a.subscription_id"
                       " WHERE a.key = :key", {"key": key}).fetchone()
    return row[0] if row else None


def hold_if_unknown_renewal(conn: sqlite3.Connection, pb: Postback, key: str) -> None:
    """A later parcela of an ``assinatura`` never seen (a shop that sold before iptvsync) would
    make a second line beside the one the buyer has: held for ``inbox attach`` (or ``subs
    import``) instead. A first parcela, or a sale without parcela, is a new purchase."""
    if not pb.subscription_code or pb.parcela is None or pb.parcela <= 1 or pb.line_item:
        return
    if conn.execute("SELECT 1 FROM subscriptions WHERE key = :key", {"key": key}).fetchone():
        return
    mine = conn.execute("SELECT id FROM subscriptions WHERE product_code = :product AND buyer_email = :email"
                        " ORDER BY id DESC LIMIT 1", {"product": pb.product_code, "email": pb.buyer_email}).fetchone()
    target = mine["id"] if mine else "SUBSCRIPTION"
    raise Held(f"renewal (parcela {pb.parcela}) of subscription {pb.subscription_code}, never seen: the buyer"
               f" has a line from before iptvsync; `iptvsync inbox attach <id> {target}` to extend it"
               " (or `iptvsync subs import` first)")
