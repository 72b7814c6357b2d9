"""XuiResellerPanel against FakeXuiReseller: packages, credits, generated credentials."""

import time
from datetime import UTC, datetime

import pytest
import requests
from support.fakepanel import LINE_PASSWORD, line_spec
from support.xui import FakeXuiReseller

from iptvsync.errors import PanelError
from iptvsync.panels.base import LineSpec
from iptvsync.panels.xui_reseller import XuiResellerPanel

API_KEY = "resellerKey987"
PASSWORD = LINE_PASSWORD
DAY = 86400


def spec_for(**changes) -> LineSpec:
    return line_spec(**{"package": 7, "max_connections": 1, "bouquets": (), **changes})


@pytest.fixture
def fake():
    # A 30-day package keeps the arithmetic below simple; calendar months are tested apart.
    with FakeXuiReseller(api_key=API_KEY, credits=10, packages={7: {"duration": 30, "unit": "days"}}) as fake:
        yield fake


@pytest.fixture
def panel(fake):
    return XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)


def test_create_buys_one_package(fake, panel):
    before = time.time()
    line = panel.create(spec_for())
    assert fake.credits == 9 and fake.count("create_line") == 1
    assert (line.username, line.password) == ("iptv000000012", PASSWORD)
    assert before + 30 * DAY - 5 <= line.expires_at <= time.time() + 30 * DAY
    assert (line.max_connections, line.bouquets, line.is_trial) == (1, (1, 2, 3), False)
    assert panel.caps.extends_by_package is True
    assert panel.get("iptv000000012", PASSWORD, line.line_id) == line


def test_create_returns_the_password_the_panel_chose(fake):
    fake.allow_change_password = False
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
    line = panel.create(spec_for())
    row = fake.lines[int(line.line_id)]
    assert (line.username, line.password) == (row["username"], row["password"])
    assert line.username == "iptv000000012" and line.password != PASSWORD


def test_a_reseller_that_may_not_choose_usernames_is_refused_before_buying(fake):
    """Through the API a reseller's get_lines is empty (XC_VM api/reseller/table.php:47; the
    XUI lineage alike), so a line the panel named cannot be found after a lost reply and the
    retry would buy a second one."""
    fake.allow_change_username = False
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert not caught.value.transient and "Change Usernames" in str(caught.value)
    assert fake.count("create_line") == 0 and fake.credits == 10
    assert panel.health()["problem"] == str(caught.value).split("create_line: ", 1)[1]


def test_a_lost_create_reply_never_buys_a_second_line(fake):
    """The adapter chose the username: the retry meets STATUS_EXISTS_USERNAME (ambiguous),
    never a second purchase, though nothing can find the line through the reseller API."""
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=0.3)
    fake.fail_next(1, "timeout_after_write", action="create_line")
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.ambiguous
    with pytest.raises(PanelError) as again:
        panel.create(spec_for())
    assert again.value.ambiguous and again.value.status == "STATUS_EXISTS_USERNAME"
    assert len(fake.lines) == 1 and fake.credits == 9


def test_out_of_credits_is_clear_and_spends_nothing():
    with FakeXuiReseller(api_key=API_KEY, credits=1, packages={7: {"credits": 2}}) as fake:
        panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
        with pytest.raises(PanelError) as caught:
            panel.create(spec_for())
        error = caught.value
        assert (error.transient, error.ambiguous) == (False, False)
        assert error.status == "STATUS_INSUFFICIENT_CREDITS"
        assert "reseller out of credits (STATUS_INSUFFICIENT_CREDITS)" in str(error)
        assert PASSWORD not in str(error) and API_KEY not in str(error)
        assert fake.lines == {} and fake.credits == 1


@pytest.mark.parametrize("package, status", [(99, "STATUS_INVALID_TYPE"), (None, "STATUS_INVALID_PACKAGE")])
def test_invalid_or_missing_package(fake, panel, package, status):
    # An unknown id is INVALID_TYPE on XC_VM (getPackage() null, reseller_api.php:1000-1001).
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for(package=package))
    assert caught.value.status == status and not caught.value.transient
    assert fake.lines == {} and fake.credits == 10
    assert fake.count("create_line") == (1 if package else 0)


def test_no_permission(fake, panel):
    fake.can_create_lines = False
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.status == "STATUS_NO_PERMISSIONS"
    assert "lacks the permission" in str(caught.value)


def test_update_extends_by_exactly_one_package_per_call(fake, panel):
    line = panel.create(spec_for())
    wanted = line.expires_at + 90 * DAY
    first = panel.update(line, spec_for(expires_at=wanted))
    assert first.expires_at == line.expires_at + 30 * DAY  # from the current expiry
    assert fake.count("edit_line") == 1 and fake.credits == 8
    second = panel.update(first, spec_for(expires_at=wanted))
    assert second.expires_at == line.expires_at + 60 * DAY and fake.credits == 7


def test_update_within_a_day_of_the_spec_buys_nothing(fake, panel):
    line = panel.create(spec_for())
    same = panel.update(line, spec_for(expires_at=line.expires_at + DAY))
    assert same.expires_at == line.expires_at
    assert fake.count("edit_line") == 0 and fake.credits == 9


def test_an_expired_line_is_extended_from_now(fake, panel):
    line_id = fake.add_line(username="iptv000000012", password=PASSWORD, exp_date=int(time.time()) - 10 * DAY)
    line = panel.get("iptv000000012", PASSWORD, str(line_id))
    extended = panel.update(line, spec_for())
    assert abs(extended.expires_at - (time.time() + 30 * DAY)) < 5


def test_disable_and_enable_cost_nothing(fake, panel):
    line = panel.create(spec_for())
    disabled = panel.update(line, spec_for(expires_at=line.expires_at, enabled=False))
    assert not disabled.enabled and fake.count("disable_line") == 1
    enabled = panel.update(disabled, spec_for(expires_at=line.expires_at, enabled=True))
    assert enabled.enabled and fake.count("enable_line") == 1
    # each toggle is followed by a free edit (no package) that refreshes the panel's cache
    edits = [params for action, params in fake.calls if action == "edit_line"]
    assert len(edits) == 2 and not any("package" in params for params in edits)
    assert fake.credits == 9 and fake.cache[int(line.line_id)]["enabled"] == 1


def test_ambiguous_extension_is_charged_once_and_visible_on_reread(fake):
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=0.3)
    line = panel.create(spec_for())
    fake.fail_next(1, "timeout_after_write", action="edit_line")
    with pytest.raises(PanelError) as caught:
        panel.update(line, spec_for(expires_at=line.expires_at + 30 * DAY))
    assert caught.value.ambiguous
    assert fake.count("edit_line") == 1 and fake.credits == 8
    assert panel.get(line.username, PASSWORD, line.line_id).expires_at == line.expires_at + 30 * DAY


def test_other_resellers_lines_are_invisible(fake, panel):
    fake.add_line(username="iptv000000012", password=PASSWORD, member_id=1)
    assert panel.get("iptv000000012", PASSWORD) is None



def test_health_reports_credits_timezone_and_package_durations(fake, panel):
    health = panel.health()
    assert (health["credits"], health["timezone"]) == (10, "panel default")
    assert health["packages"] == "7: 30 days, 1 cr, outputs m3u8,ts"


def test_lines_are_found_by_id_when_the_reseller_search_finds_nothing():
    with FakeXuiReseller(api_key=API_KEY) as fake:  # XC_VM: get_lines answers [] via the API
        panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
        line = panel.create(spec_for())
        assert panel.get(line.username, PASSWORD) is None
        assert panel.get(line.username, PASSWORD, line.line_id) == line


def test_a_month_package_bought_in_february_is_one_package_not_two():
    """strtotime('+1 months') from 1 Feb is 1 Mar: 28 days, short of a 30-day ledger period by
    two days. One payment buys one package (reseller_api.php:954-961)."""
    feb_1 = datetime(2027, 2, 1, 12, 0, tzinfo=UTC).timestamp()
    with FakeXuiReseller(api_key=API_KEY, credits=10) as fake:
        fake.now = lambda: feb_1
        panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
        line = panel.create(spec_for(expires_at=int(feb_1) + 30 * DAY))
        assert line.expires_at == int(datetime(2027, 3, 1, 12, 0, tzinfo=UTC).timestamp())
        again = panel.update(line, spec_for(expires_at=int(feb_1) + 30 * DAY))
        assert again.expires_at == line.expires_at and fake.credits == 9
        assert fake.count("edit_line") == 0
        assert panel.shortfall_slack_s(spec_for()) == 4 * DAY  # a day + 3 for one month


def test_renewal_keeps_the_notes_and_contact_the_panel_would_wipe(fake, panel):
    line = panel.create(spec_for())
    fake.lines[int(line.line_id)]["contact"] = "buyer@example.com"
    renewed = panel.update(line, spec_for(expires_at=line.expires_at + 30 * DAY))
    row = fake.lines[int(renewed.line_id)]
    assert row["reseller_notes"] == "iptvsync sub 12 [iptvsync:iptv000000012]"
    assert row["contact"] == "buyer@example.com" and fake.credits == 8


def test_the_fake_really_has_the_reseller_quirks(fake):
    def raw_call(action, **fields):
        return requests.post(fake.url + "/", params={"action": action},
                             data={"api_key": API_KEY, **fields}, timeout=2).json()

    reply = raw_call("create_line", package="7", username="rawline001", password="rawpass001",
                     exp_date="2099-01-01 00:00:00", max_connections="9", is_trial="0")
    row = fake.lines[int(reply["data"]["id"])]
    # exp_date/max_connections/is_trial are not reseller keys: the package decides.
    assert row["exp_date"] < time.time() + 31 * DAY
    assert (row["max_connections"], row["is_trial"], fake.credits) == (1, 0, 9)
    expiry = row["exp_date"]
    raw_call("edit_line", id=str(row["id"]), reseller_notes="free edit")
    assert (row["exp_date"], row["reseller_notes"], fake.credits) == (expiry, "free edit", 9)
    assert raw_call("create_line", username="x")["status"] == "STATUS_INVALID_PACKAGE"


def test_bouquet_editing_group_gets_the_package_bouquets_on_create_renew_and_toggle():
    """A group with "Allow Bouquet Editing" crashes on count(null) (reseller_api.php:969,
    :1013; live on XC_VM: an empty 200 and no line) unless bouquets_selected[] is sent."""
    with FakeXuiReseller(api_key=API_KEY, credits=10, allow_change_bouquets=True,
                         packages={7: {"duration": 30, "unit": "days", "bouquets": [2, 5]}}) as fake:
        panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
        line = panel.create(spec_for(bouquets=(9,)))
        renewed = panel.update(line, spec_for(expires_at=line.expires_at + 30 * DAY))
        panel.update(renewed, spec_for(expires_at=renewed.expires_at, enabled=False))
        sent = [request.get("bouquets_selected") for action, request in fake.calls
                if action in ("create_line", "edit_line")]
        assert sent == [["2", "5"]] * 3  # create, renewal, the free edit after disable
        assert fake.credits == 8 and fake.lines[int(line.line_id)]["enabled"] == 0


def test_the_fake_crashes_like_xc_vm_without_bouquets_selected():
    with FakeXuiReseller(api_key=API_KEY, allow_change_bouquets=True) as fake:
        reply = requests.post(fake.url + "/", params={"action": "create_line"},
                              data={"api_key": API_KEY, "package": "7"}, timeout=2)
        assert (reply.status_code, reply.text, fake.lines) == (200, "", {})
        kept = requests.post(fake.url + "/", params={"action": "create_line"}, timeout=2,
                             data={"api_key": API_KEY, "package": "7", "bouquets_selected[]": ["2", "9"]}).json()
        assert fake.lines[int(kept["data"]["id"])]["bouquet"] == [2]  # only the package's own (:972-980)


def test_a_line_ten_days_short_of_what_was_paid_buys_a_package(fake, panel):
    """A purchase created 20 days late, then renewed: the line ends 10 days before paid_until.
    Half a 30-day package (the old rule) let it expire while paid; only short months are
    tolerated now."""
    line = panel.create(spec_for())
    renewed = panel.update(line, spec_for(expires_at=line.expires_at + 10 * DAY))
    assert renewed.expires_at == line.expires_at + 30 * DAY and fake.credits == 8
    assert panel.shortfall_slack_s(spec_for()) == DAY  # a days package: no calendar slack
