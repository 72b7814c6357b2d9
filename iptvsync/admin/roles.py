"""Who may do what: one table of actions, one check (``requires``).

``owner`` may do everything; ``support`` may look, resend access and retry, nothing else.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, g

OWNER, SUPPORT = "owner", "support"
BOTH = frozenset({OWNER, SUPPORT})
ONLY_OWNER = frozenset({OWNER})

#: action -> the roles allowed to do it
ACTIONS: dict[str, frozenset[str]] = {
    "view": BOTH,
    "subs.resend": BOTH,
    "subs.retry": BOTH,
    "inbox.retry": BOTH,
    "audit.verify": BOTH,
    "subs.grant": ONLY_OWNER,
    "subs.extend": ONLY_OWNER,
    "subs.suspend": ONLY_OWNER,
    "subs.resume": ONLY_OWNER,
    "subs.cancel": ONLY_OWNER,
    "subs.reveal": ONLY_OWNER,
    "inbox.replay": ONLY_OWNER,
    "inbox.attach": ONLY_OWNER,
    "operators": ONLY_OWNER,
}


def allowed(role: str | None, action: str) -> bool:
    return role in ACTIONS[action]


def requires(action: str):
    """The view runs only for a logged-in operator whose role may do ``action``; 403 otherwise
    (the login redirect for no session happens before, in ``auth.load_operator``)."""
    if action not in ACTIONS:
        raise KeyError(action)

    def decorate(view):
        @wraps(view)
        def checked(*args, **kwargs):
            if g.op is None or not allowed(g.op["role"], action):
                abort(403)
            return view(*args, **kwargs)
        checked.required_action = action
        return checked
    return decorate
