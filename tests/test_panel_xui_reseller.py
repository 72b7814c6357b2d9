"""XuiResellerPanel against FakeXuiReseller: packages, credits, generated credentials."""

import time

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
    with FakeXuiReseller(api_key=API_KEY, credits=10) as fake:
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
    assert panel.get("iptv000000012", PASSWORD) == line


def test_create_returns_the_credentials_the_panel_chose(fake):
    fake.allow_change_username = fake.allow_change_password = False
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=2)
    line = panel.create(spec_for())
    row = fake.lines[int(line.line_id)]
    assert (line.username, line.password) == (row["username"], row["password"])
    assert line.username != "iptv000000012" and line.password != PASSWORD
    # Our username is in the notes, so a lookup by it still finds the renamed line.
    assert panel.get("iptv000000012", PASSWORD).line_id == line.line_id


def test_timeout_after_create_with_generated_names_is_found_by_our_username(fake):
    fake.allow_change_username = False
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=0.3)
    fake.fail_next(1, "timeout_after_write", action="create_line")
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.ambiguous
    found = panel.get("iptv000000012", PASSWORD)
    assert found is not None and found.username != "iptv000000012"
    assert fake.credits == 9  # one purchase; the engine sees the line and does not buy again


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


@pytest.mark.parametrize("package", [99, None])
def test_invalid_or_missing_package(fake, panel, package):
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for(package=package))
    assert caught.value.status == "STATUS_INVALID_PACKAGE" and not caught.value.transient
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
    fake.add_line(username="iptv000000012", password=PASSWORD, exp_date=int(time.time()) - 10 * DAY)
    line = panel.get("iptv000000012", PASSWORD)
    extended = panel.update(line, spec_for())
    assert abs(extended.expires_at - (time.time() + 30 * DAY)) < 5


def test_disable_and_enable_cost_nothing(fake, panel):
    line = panel.create(spec_for())
    disabled = panel.update(line, spec_for(expires_at=line.expires_at, enabled=False))
    assert not disabled.enabled and fake.count("disable_line") == 1
    enabled = panel.update(disabled, spec_for(expires_at=line.expires_at, enabled=True))
    assert enabled.enabled and fake.count("enable_line") == 1
    assert fake.count("edit_line") == 0 and fake.credits == 9


def test_ambiguous_extension_is_charged_once_and_visible_on_reread(fake):
    panel = XuiResellerPanel("shop", fake.url, API_KEY, timeout_s=0.3)
    line = panel.create(spec_for())
    fake.fail_next(1, "timeout_after_write", action="edit_line")
    with pytest.raises(PanelError) as caught:
        panel.update(line, spec_for(expires_at=line.expires_at + 30 * DAY))
    assert caught.value.ambiguous
    assert fake.count("edit_line") == 1 and fake.credits == 8
    assert panel.get(line.username, PASSWORD).expires_at == line.expires_at + 30 * DAY


def test_other_resellers_lines_are_invisible(fake, panel):
    fake.add_line(username="iptv000000012", password=PASSWORD, member_id=1)
    assert panel.get("iptv000000012", PASSWORD) is None



def test_health_reports_credits(fake, panel):
    assert panel.health() == {"ok": True, "user": "reseller", "credits": 10}


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
