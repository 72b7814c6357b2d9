"""Who does an operator action: the name the audit row carries, and what it adds to the row.

The CLI acts as ``cli:<unix user>``; the admin console as ``web:<login>`` with the client's
address and the reason the operator typed. Every ``ops`` action takes one as ``actor=``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Actor(NamedTuple):
    name: str                   # "cli:alice", "web:maria"
    client: str | None = None   # the browser's address, for the web console
    reason: str | None = None   # why, as the operator typed it

    @classmethod
    def cli(cls, reason: str | None = None) -> Actor:
        from ..ledger.db import os_user

        return cls(f"cli:{os_user()}", reason=reason)

    def detail(self) -> dict[str, Any]:
        """What the audit row's detail gets besides the action's own facts."""
        return {k: v for k, v in (("client", self.client), ("reason", self.reason)) if v}


def resolve(actor: Actor | None) -> Actor:
    """``actor`` or, when a caller (a script, a test) names none, the CLI's OS user."""
    return actor if actor is not None else Actor.cli()
