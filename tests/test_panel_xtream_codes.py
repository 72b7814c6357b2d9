"""XtreamCodesPanel against FakeXtreamCodes: the pair-keyed api.php and its quirks."""

import json

import pytest
import requests
from support.fakepanel import LINE_PASSWORD, line_spec
from support.xtream import FakeXtreamCodes

from iptvsync.errors import PanelError
from iptvsync.panels.xtream_codes import XtreamCodesPanel

API_PASS = "xcApiPass555"
PASSWORD = LINE_PASSWORD
DAY = 86400


spec_for = line_spec


@pytest.fixture
def fake():
    with FakeXtreamCodes(api_pass=API_PASS) as fake:
        yield fake


@pytest.fixture
def panel(fake):
    return XtreamCodesPanel("xc", fake.url, API_PASS, timeout_s=2)


def raw_call(fake, sub, **fields):
    data = {"api_pass": API_PASS, **fields}
    return requests.post(fake.url + "/api.php", params={"action": "user", "sub": sub},
                         data=data, timeout=2).json()


def test_create_then_get_round_trip(fake, panel):
    spec = spec_for()
    line = panel.create(spec)
    row = fake.lines[int(line.line_id)]
    assert (row["exp_date"], row["max_connections"], row["bouquet"]) == (spec.expires_at, 2, [1, 2, 3])
    assert (row["admin_notes"], row["reseller_notes"], row["is_trial"]) == ("iptvsync sub 12", "", 0)
    assert (line.expires_at, line.enabled, line.bouquets) == (spec.expires_at, True, (1, 2, 3))
    assert panel.get(spec.username, PASSWORD) == line
    assert panel.get(spec.username, "not-the-password") is None


def test_create_sends_only_safe_columns(fake, panel):
    panel.create(spec_for())
    user_data = next(p for a, p in fake.calls if a == "user.create")["user_data"]
    assert set(user_data) == {"username", "password", "exp_date", "max_connections", "enabled",
                              "admin_enabled", "bouquet", "admin_notes", "reseller_notes",
                              "forced_country", "play_token"}  # every NOT NULL column
    assert json.loads(user_data["bouquet"]) == [1, 2, 3]  # a JSON text, not bouquet[]


def test_update_changes_only_what_it_sends(fake, panel):
    line_id = fake.add_line(username="iptv000000012", password=PASSWORD, is_trial=1,
                            exp_date=1, bouquet=[5], admin_notes="kept")
    line = panel.get("iptv000000012", PASSWORD)
    spec = spec_for(enabled=False)
    updated = panel.update(line, spec)
    row = fake.lines[line_id]
    assert (row["exp_date"], row["enabled"], row["max_connections"]) == (spec.expires_at, 0, 2)
    assert (row["bouquet"], row["is_trial"], row["admin_notes"]) == ([1, 2, 3], 1, "kept")
    assert (updated.expires_at, updated.enabled, updated.is_trial) == (spec.expires_at, False, True)
    assert panel.update(updated, spec_for(expires_at=spec.expires_at)).enabled




def test_the_fake_really_has_the_xc_quirks(fake):
    fake.add_line(username="dup", password="first")
    reply = raw_call(fake, "create", **{"user_data[username]": "dup", "user_data[password]": "second",
                                        "user_data[admin_notes]": "", "user_data[reseller_notes]": "",
                                        "user_data[forced_country]": "", "user_data[play_token]": "",
                                        "user_data[bouquet][]": ["1", "2"]})
    assert reply["result"] is True  # same username, other password: a second row
    second = fake.lines[reply["created_id"]]
    assert [r["username"] for r in fake.lines.values()] == ["dup", "dup"]
    assert second["bouquet"] == []  # array-style bouquet is lost
    notes = {"user_data[admin_notes]": "", "user_data[reseller_notes]": ""}
    assert raw_call(fake, "create", **notes, **{"user_data[output_formats]": "[1]"})["error"] == \
        "PARAMETER ERROR"
    assert raw_call(fake, "create", **{"user_data[username]": "n"})["error"] == "PARAMETER ERROR"
    unchanged = raw_call(fake, "edit", username="dup", password="first")
    assert unchanged == {"result": True}
    assert raw_call(fake, "info", username="dup", password="nope") == \
        {"result": False, "error": "NOT EXISTS"}


def test_a_retried_create_with_the_stored_password_is_detected(fake):
    panel = XtreamCodesPanel("xc", fake.url, API_PASS, timeout_s=0.3)
    fake.fail_next(1, "timeout_after_write", action="user.create")
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.ambiguous
    assert panel.get("iptv000000012", PASSWORD) is not None  # what the engine does next
    with pytest.raises(PanelError) as again:
        panel.create(spec_for())  # even a blind retry cannot duplicate the pair
    assert (again.value.ambiguous, again.value.status) == (True, "EXISTS")
    assert len(fake.lines) == 1
    assert PASSWORD not in str(again.value)


def test_ip_forbidden_and_key_wrong_are_permanent():
    with FakeXtreamCodes(api_pass=API_PASS, allowed_ips=["198.51.100.7"]) as fake:
        panel = XtreamCodesPanel("xc", fake.url, API_PASS, timeout_s=2)
        with pytest.raises(PanelError) as forbidden:
            panel.health()
        assert (forbidden.value.status, forbidden.value.transient) == ("IP FORBIDDEN", False)
        assert "api_ips" in str(forbidden.value)
        fake.allowed_ips = ["127.0.0.1"]
        wrong = XtreamCodesPanel("xc", fake.url, "wrong-pass-77", timeout_s=2)
        with pytest.raises(PanelError) as key_wrong:
            wrong.get("iptv000000012", PASSWORD)
        error = key_wrong.value
        assert (error.status, error.transient, error.ambiguous) == ("KEY WRONG", False, False)
        assert "wrong-pass-77" not in str(error) and PASSWORD not in str(error)


def test_edit_answering_true_without_changing_is_seen_on_reread(fake, panel):
    line = panel.create(spec_for())
    fake.ignore_writes = True
    reread = panel.update(line, spec_for(max_connections=5))
    assert reread.max_connections == 2


def test_create_answered_but_not_stored_is_ambiguous(fake, panel):
    fake.ignore_writes = True
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert (caught.value.status, caught.value.ambiguous) == ("NOT_FOUND", True)


def test_health_and_api_php_url_forms(fake, panel):
    assert panel.health() == {"ok": True}
    probe = next(p for a, p in fake.calls if a == "user.info")
    assert probe["username"].startswith("iptvsync-health-")
    assert XtreamCodesPanel("xc", fake.url + "/api.php", API_PASS, timeout_s=2).health()["ok"]


def test_passwords_stay_out_of_urls_and_raw(fake, panel):
    line = panel.update(panel.create(spec_for()), spec_for())
    assert line.raw["password"] == "***" and line.raw["play_token"] == ""
    assert all(API_PASS not in q and PASSWORD not in q for q in fake.queries)
    assert PASSWORD not in repr(line)


@pytest.mark.parametrize("strict", [True, False])
def test_a_create_without_every_not_null_column_fails_only_on_strict_mysql(strict):
    """XC29 database.sql:1395, :1398: forced_country and play_token are NOT NULL without a
    default; api.php:240-241 answers PARAMETER ERROR when the INSERT fails."""
    with FakeXtreamCodes(api_pass=API_PASS, strict=strict) as fake:
        reply = raw_call(fake, "create", **{"user_data[username]": "u1", "user_data[password]": "p1",
                                            "user_data[admin_notes]": "", "user_data[reseller_notes]": ""})
        assert reply == ({"result": False, "error": "PARAMETER ERROR"} if strict else
                         {"result": True, "created_id": 1, "username": "u1", "password": "p1"})
        panel = XtreamCodesPanel("main", fake.url, API_PASS, timeout_s=2)
        assert panel.create(spec_for()).enabled  # the adapter sends all four, so both modes work


@pytest.mark.parametrize("garbled", [False, True])
def test_a_created_line_plays_through_player_api_even_with_the_inverted_status(garbled):
    """XC29 player_api.php:196-206 as decoded says "Expired" for an active line: the login
    check asks an action, which only an active line is answered (:33-38), so the line still
    counts as playable (outputs 1-3 from api.php:204, :232-233)."""
    from iptvsync.panels.player_api import player_login

    with FakeXtreamCodes(api_pass=API_PASS, garbled_status=garbled) as fake:
        panel = XtreamCodesPanel("main", fake.url, API_PASS, timeout_s=2)
        line = panel.create(spec_for())
        login = player_login(fake.root, line.username, PASSWORD)
        assert login.playable and login.outputs == ("m3u8", "ts", "rtmp")
        assert login.status == ("Expired" if garbled else "Active")
        assert not player_login(fake.root, line.username, "wrong-password").playable  # auth 0


@pytest.mark.parametrize("column", ["enabled", "admin_enabled"])
def test_a_disabled_or_banned_line_reported_expired_is_not_playable(column):
    """XC29 player_api.php:196-206 says "Expired" with a future exp_date for a disabled or
    banned line too: doctor must not call it playable."""
    from iptvsync.panels.player_api import player_login

    with FakeXtreamCodes(api_pass=API_PASS, garbled_status=True) as fake:
        panel = XtreamCodesPanel("main", fake.url, API_PASS, timeout_s=2)
        line = panel.create(spec_for())
        next(iter(fake.lines.values()))[column] = 0
        login = player_login(fake.root, line.username, PASSWORD)
        assert (login.playable, login.status) == (False, "Expired")
        assert "disabled or banned" in login.detail
