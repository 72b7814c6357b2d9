"""The buyer's side of a panel: does a line log in through ``player_api.php`` as an app would?

IPTV apps call ``<server>/player_api.php?username=U&password=P`` and look at ``user_info``:
``auth`` 1, ``status`` "Active", ``exp_date`` and ``allowed_output_formats`` (the extensions
the line may stream). A line with no output format logs in but plays nothing live, so it does
not count as playable.

Panels disagree on refusals: XUI/XC_VM answer HTTP 404 with an nginx page for a disabled,
banned, expired or unknown line; Xtream Codes 2.9 answers 200 ``{"user_info":{"auth":0}}`` for
bad credentials and 200 with ``auth`` 1 for any valid pair, with a garbled ``status``: every
line not yet expired reads "Expired", active, disabled or banned alike (player_api.php:196-206).
There the verdict asks an action, which only an active line is answered (a list).
Credentials travel in the query string because that is how apps call it; they are never put
into a message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from iptvsync.panels._http import USER_AGENT, as_int


@dataclass(frozen=True)
class Login:
    playable: bool
    detail: str  # one line, no credentials
    status: str | None = None
    outputs: tuple[str, ...] = ()


def player_login(server: str, username: str, password: str, timeout_s: float = 10) -> Login:
    """Log in as the buyer's app would; ``playable`` only for an active line with outputs."""
    url = server.rstrip("/") + "/player_api.php"
    try:
        response = requests.get(url, params={"username": username, "password": password},
                                timeout=(min(timeout_s, 10), timeout_s), allow_redirects=False,
                                headers={"User-Agent": USER_AGENT})
    except requests.RequestException as exc:
        return Login(False, f"player_api unreachable ({type(exc).__name__})")
    if response.status_code == 404:
        return Login(False, "player_api refused the login (HTTP 404: disabled, banned, expired "
                            "or unknown line)")
    if response.status_code != 200:
        return Login(False, f"player_api answered HTTP {response.status_code}")
    try:
        info = response.json().get("user_info")
    except (ValueError, AttributeError):
        info = None
    if not isinstance(info, dict):
        return Login(False, "player_api reply is not the JSON an app expects")
    if as_int(info.get("auth")) != 1:
        return Login(False, "player_api: auth 0 (wrong username or password)")
    status = str(info.get("status") or "")
    outputs = tuple(str(o) for o in info.get("allowed_output_formats") or ())
    expiry = as_int(info.get("exp_date"))
    current = expiry is None or expiry > time.time()
    if status != "Active" and not (status == "Expired" and current):
        return Login(False, f"player_api: status {status or 'missing'}", status, outputs)
    if status == "Expired" and current and not _serves_actions(url, username, password, timeout_s):
        # Xtream Codes 2.9 says "Expired" for every line not yet expired, disabled and banned
        # ones too (player_api.php:196-206); only an active line gets an action's answer.
        return Login(False, "player_api: disabled or banned (Xtream Codes reports it as Expired)",
                     status, outputs)
    if not current:
        return Login(False, "player_api: the line has expired", status, outputs)
    if not outputs:
        return Login(False, "player_api: Active but no allowed output format (apps cannot play)",
                     status, outputs)
    return Login(True, f"plays: Active, outputs {', '.join(outputs)}", status, outputs)


def _serves_actions(url: str, username: str, password: str, timeout_s: float) -> bool:
    """Whether ``action=get_live_categories`` answers a list: Xtream Codes 2.9 runs an action
    only for ``admin_enabled == 1 && enabled == 1`` and a current expiry, and answers anything
    else with the login object (player_api.php:33-38, then the ``default`` branch)."""
    try:
        reply = requests.get(url, params={"username": username, "password": password,
                                          "action": "get_live_categories"},
                             timeout=(min(timeout_s, 10), timeout_s), allow_redirects=False,
                             headers={"User-Agent": USER_AGENT})
        return reply.status_code == 200 and isinstance(reply.json(), list)
    except (requests.RequestException, ValueError):
        return False
