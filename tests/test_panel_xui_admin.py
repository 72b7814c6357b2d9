"""XuiAdminPanel against FakeXuiAdmin over real HTTP: round trips, quirks, ambiguity."""

import json

import pytest
import requests
from support.fakepanel import LINE_PASSWORD, line_spec
from support.xui import FakeXuiAdmin

from iptvsync.errors import PanelError
from iptvsync.panels.xui_admin import XuiAdminPanel

API_KEY = "adminKey123456"
PASSWORD = LINE_PASSWORD
DAY = 86400


spec_for = line_spec


@pytest.fixture
def fake():
    with FakeXuiAdmin(api_key=API_KEY, access_code="abc") as fake:
        yield fake


@pytest.fixture
def panel(fake):
    return XuiAdminPanel("main", fake.url, API_KEY, timeout_s=2)


def raw_call(fake, action, **fields):
    """A call as a careless client would make it, to show the fake's quirks are real."""
    reply = requests.post(fake.url + "/", params={"action": action},
                          data={"api_key": API_KEY, **fields}, timeout=2)
    return reply.json()


def test_create_then_get_round_trip(fake, panel):
    spec = spec_for()
    created = panel.create(spec)
    row = fake.lines[int(created.line_id)]
    assert (row["username"], row["password"]) == (spec.username, PASSWORD)
    assert row["exp_date"] == spec.expires_at
    assert (row["max_connections"], row["bouquet"], row["is_trial"]) == (2, [1, 2, 3], 0)
    assert row["admin_notes"] == "iptvsync sub 12"
    found = panel.get(spec.username, PASSWORD)
    assert found == created
    assert (found.expires_at, found.enabled, found.max_connections) == (spec.expires_at, True, 2)
    assert (found.bouquets, found.is_trial, found.banned) == ((1, 2, 3), False, False)


def test_create_sends_bouquets_as_json_text_and_no_flag_keys(fake, panel):
    panel.create(spec_for())
    params = next(params for action, params in fake.calls if action == "create_line")
    assert json.loads(params["bouquets_selected"]) == [1, 2, 3]
    assert params["exp_date"] == f"@{spec_for().expires_at}"  # no timezone can shift it
    assert params["access_output"] == ["1", "2", "3"]  # a form array: absent stores "[]"
    assert not {"is_trial", "is_restreamer", "is_stalker", "is_isplock", "bypass_ua"} & set(params)


def test_get_matches_the_exact_username_despite_the_like_search(fake, panel):
    fake.add_line(username="iptv000000012x", password="other1")
    fake.add_line(username="someoneelse01", admin_notes="moved from iptv000000012")
    assert panel.get("iptv000000012", PASSWORD) is None
    mine = fake.add_line(username="iptv000000012", password=PASSWORD, bouquet=[4])
    found = panel.get("iptv000000012", PASSWORD)
    assert found.line_id == str(mine)
    assert found.bouquets == (4,)  # read through get_line: get_lines rows lack bouquets


def test_get_by_line_id_and_a_stale_id_falls_back_to_search(fake, panel):
    other = fake.add_line(username="someoneelse01")
    mine = fake.add_line(username="iptv000000012", password=PASSWORD)
    assert panel.get("iptv000000012", PASSWORD, line_id=str(mine)).line_id == str(mine)
    calls_before = fake.count("get_lines")
    assert panel.get("iptv000000012", PASSWORD, line_id=str(other)).line_id == str(mine)
    assert fake.count("get_lines") == calls_before + 1
    assert panel.get("iptv000000012", PASSWORD, line_id="999").line_id == str(mine)


def test_get_pages_through_many_like_matches(fake, panel):
    for n in range(120):
        fake.add_line(username=f"x{n}", admin_notes="iptv000000012 lookalike")
    mine = fake.add_line(username="iptv000000012", password=PASSWORD)
    assert panel.get("iptv000000012", PASSWORD).line_id == str(mine)


def test_update_resends_everything_edit_line_would_reset(fake, panel):
    line = panel.create(spec_for())
    new_expiry = spec_for().expires_at + 30 * DAY
    updated = panel.update(line, spec_for(expires_at=new_expiry, enabled=False))
    row = fake.lines[int(line.line_id)]
    assert (row["exp_date"], row["enabled"], row["max_connections"]) == (new_expiry, 0, 2)
    assert (row["bouquet"], row["is_trial"], row["admin_enabled"]) == ([1, 2, 3], 0, 1)
    assert (row["username"], row["password"]) == ("iptv000000012", PASSWORD)
    assert (updated.expires_at, updated.enabled) == (new_expiry, False)
    edit = next(params for action, params in fake.calls if action == "edit_line")
    assert "is_trial" not in edit

    enabled = panel.update(updated, spec_for(expires_at=new_expiry, enabled=True))
    assert enabled.enabled and fake.lines[int(line.line_id)]["enabled"] == 1


def test_update_keeps_a_trial_a_trial_and_never_makes_one(fake, panel):
    trial = fake.add_line(username="iptv000000012", password=PASSWORD, is_trial=1,
                          is_restreamer=1, max_connections=3, bouquet=[9])
    line = panel.get("iptv000000012", PASSWORD)
    assert line.is_trial
    panel.update(line, spec_for(max_connections=3, bouquets=(9,)))
    row = fake.lines[trial]
    assert (row["is_trial"], row["is_restreamer"], row["is_isplock"], row["bypass_ua"]) == (1, 1, 0, 0)
    assert (row["max_connections"], row["bouquet"]) == (3, [9])


def test_update_keeps_what_an_operator_set(fake, panel):
    line_id = fake.add_line(username="iptv000000012", password=PASSWORD, admin_enabled=0,
                            member_id=5, allowed_ips=["203.0.113.9"], admin_notes="VIP",
                            allowed_outputs=[2])
    line = panel.get("iptv000000012", PASSWORD)
    assert line.banned
    panel.update(line, spec_for())
    row = fake.lines[line_id]
    assert (row["admin_enabled"], row["member_id"], row["admin_notes"]) == (0, 5, "VIP")
    assert (row["allowed_ips"], row["allowed_outputs"]) == (["203.0.113.9"], [2])


def test_update_returns_what_the_panel_has_when_it_ignores_writes(fake, panel):
    line = panel.create(spec_for())
    fake.ignore_writes = True
    reread = panel.update(line, spec_for(expires_at=line.expires_at + DAY, max_connections=4))
    assert (reread.expires_at, reread.max_connections) == (line.expires_at, 2)  # engine decides



def test_the_fake_really_has_the_edit_line_quirks(fake):
    line_id = fake.add_line(username="u1", password="p1", max_connections=3, enabled=0,
                            is_trial=1, bouquet=[1, 2], exp_date=2_000_000_000)
    raw_call(fake, "edit_line", id=line_id, username="u1", password="p1")
    row = fake.lines[line_id]
    assert (row["max_connections"], row["enabled"], row["is_trial"]) == (1, 1, 0)
    assert (row["bouquet"], row["exp_date"]) == ([], None)  # never expires now
    raw_call(fake, "create_line", username="u2", password="p2", is_trial="0",
             **{"bouquets_selected[]": ["1", "2"]})
    created = next(r for r in fake.lines.values() if r["username"] == "u2")
    assert (created["is_trial"], created["bouquet"]) == (1, [])
    assert raw_call(fake, "create_line", username="u2")["status"] == "STATUS_EXISTS_USERNAME"
    assert raw_call(fake, "create_line", username="u3", exp_date="1767225600")["status"] == \
        "STATUS_INVALID_DATE"


def test_duplicate_username_is_ambiguous_and_redacted(fake, panel):
    panel.create(spec_for())
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    error = caught.value
    assert (error.ambiguous, error.transient, error.status) == (True, False, "STATUS_EXISTS_USERNAME")
    assert PASSWORD not in str(error) and PASSWORD not in repr(error)


def test_invalid_api_key_is_a_clear_permanent_error(fake):
    panel = XuiAdminPanel("main", fake.url, "wrong-key-42", timeout_s=2)
    with pytest.raises(PanelError) as caught:
        panel.get("iptv000000012", PASSWORD)
    error = caught.value
    assert (error.transient, error.ambiguous, error.status) == (False, False, "Invalid API key.")
    assert "invalid API key" in str(error) and "wrong-key-42" not in str(error)


def test_timeout_after_create_is_ambiguous_and_get_finds_the_line(fake):
    panel = XuiAdminPanel("main", fake.url, API_KEY, timeout_s=0.3)
    fake.fail_next(1, "timeout_after_write", action="create_line")
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.ambiguous and caught.value.transient
    assert caught.value.status == "TIMEOUT"
    assert panel.get("iptv000000012", PASSWORD) is not None


@pytest.mark.parametrize("mode", ["500", "nonjson", "close"])
def test_failures_that_may_have_written_are_transient_and_ambiguous(fake, panel, mode):
    fake.fail_next(1, mode)
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.transient and caught.value.ambiguous
    assert fake.lines == {}  # these failure modes wrote nothing


def test_line_raw_and_reprs_hold_no_secret(fake, panel):
    line = panel.create(spec_for())
    assert line.raw["password"] == "***"
    assert PASSWORD not in repr(line) and PASSWORD not in json.dumps(line.raw)
    assert API_KEY not in repr(panel)


def test_health_reports_timezone_outputs_and_cache_without_the_key(fake, panel):
    health = panel.health()
    assert (health["user"], health["timezone"], health["line_cache"]) == ("admin", "America/Sao_Paulo", "off")
    assert health["outputs"].startswith("m3u8, ts, rtmp")
    assert API_KEY not in json.dumps(health)


@pytest.mark.parametrize("timezone, shown", [("America/Sao_Paulo", "America/Sao_Paulo"),
                                             (None, "Europe/London (panel default)")])
def test_the_api_users_timezone_does_not_shift_the_expiry(timezone, shown):
    # Wall-clock text would be read in the user's zone, or the panel's default when the user
    # has none (XC_VM live: 3 h off in São Paulo); "@<unix>" is not.
    with FakeXuiAdmin(api_key=API_KEY, timezone=timezone) as fake:
        panel = XuiAdminPanel("main", fake.url, API_KEY, timeout_s=2)
        spec = spec_for()
        assert panel.create(spec).expires_at == spec.expires_at
        assert fake.parse_date("2027-01-31 00:00:00") != 1801353600 or timezone is None
        assert panel.health()["timezone"] == shown


def test_the_fake_reads_php_datetime_texts_like_the_panel():
    with FakeXuiAdmin(timezone="America/New_York") as fake:  # live XC_VM values, NY admin
        assert fake.parse_date("2027-01-31 00:00:00") == 1801371600
        for text in ("2027-01-31T00:00:00Z", "2027-01-31 00:00:00 UTC", "2027-01-31T00:00:00+00:00",
                     "@1801353600"):
            assert fake.parse_date(text) == 1801353600
        assert fake.parse_date("1801353600") is None  # STATUS_INVALID_DATE
        line_id = fake.add_line(username="u", exp_date=1801353600)
        requests.post(fake.url + "/", params={"action": "edit_line"}, timeout=2,
                      data={"api_key": "k", "id": line_id, "username": "u", "exp_date": ""})
        assert fake.lines[line_id]["exp_date"] == 0  # stored as 0: expired (live XC_VM)


def test_a_line_created_without_outputs_reads_back_as_unplayable(fake, panel):
    reply = requests.post(fake.url + "/", params={"action": "create_line"}, timeout=2, data={
        "api_key": API_KEY, "username": "bare", "password": "barepass1", "exp_date": "@1801353600",
        "access_output": "[1,2]"})  # JSON text, not a form array: stored as "[]" (live XC_VM)
    assert reply.json()["data"]["allowed_outputs"] == "[]"
    assert panel.get("bare", "barepass1").outputs == ()


def test_api_key_and_passwords_never_travel_in_the_url(fake, panel):
    panel.update(panel.create(spec_for()), spec_for(enabled=False))
    panel.health()
    assert fake.queries and all(API_KEY not in q and PASSWORD not in q for q in fake.queries)


def test_disabling_refreshes_the_line_cache_players_read():
    """With the cache on, disable_line leaves player_api answering from the stale cache
    (api/admin/index.php:754-767; live XC_VM); the adapter disables through edit_line, which
    refreshes it (admin_api.php:6968)."""
    from iptvsync.panels.player_api import player_login

    with FakeXuiAdmin(api_key=API_KEY, enable_cache=True) as fake:
        panel = XuiAdminPanel("main", fake.url, API_KEY, timeout_s=2)
        line = panel.create(spec_for())
        assert player_login(fake.root, line.username, PASSWORD).playable
        requests.post(fake.url + "/", params={"action": "disable_line"}, timeout=2,
                      data={"api_key": API_KEY, "id": line.line_id})
        assert player_login(fake.root, line.username, PASSWORD).playable  # stale: the quirk
        panel.update(panel.get(line.username, PASSWORD, line.line_id), spec_for(enabled=False))
        assert fake.count("disable_line") == 1  # only the raw call above
        assert not player_login(fake.root, line.username, PASSWORD).playable


def test_search_pages_past_the_first_hundred_matches(fake, panel):
    """In API mode XC_VM answers recordsFiltered = min(total, limit) (api/admin/table.php:146;
    live: 130 lines, limit 100 -> "100"): paging stops at a short page, not at that count."""
    for n in range(130):
        fake.add_line(username=f"iptv000000012{n:03d}", password="other1")  # LIKE matches all
    mine = fake.add_line(username="iptv000000012", password=PASSWORD)
    assert panel.get("iptv000000012", PASSWORD).line_id == str(mine)
    assert len(list(panel.rows())) == 131 and fake.count("get_lines") == 2 + 2
    first = raw_call(fake, "get_lines", limit="100")
    assert (first["recordsTotal"], first["recordsFiltered"], len(first["data"])) == ("131", "100", 100)
