"""The shared HTTP leg and build_panel: failure flags, redaction, value decoding."""

import socket

import pytest
from support.xui import FakeXuiAdmin

from iptvsync.errors import PanelError
from iptvsync.panels._http import as_bool, as_int, as_int_list, line_from_row, redact
from iptvsync.panels.dry_run import DryRunPanel
from iptvsync.panels.registry import KINDS as PANEL_KINDS
from iptvsync.panels.registry import build_panel
from iptvsync.panels.xtream_codes import XtreamCodesPanel
from iptvsync.panels.xui_admin import XuiAdminPanel
from iptvsync.panels.xui_reseller import XuiResellerPanel

API_KEY = "adminKey123456"


@pytest.mark.parametrize(("kind", "cls", "by_package"), [
    ("xui-admin", XuiAdminPanel, False), ("xui-reseller", XuiResellerPanel, True),
    ("xtream-codes", XtreamCodesPanel, False), ("dry-run", DryRunPanel, False)])
def test_build_panel(kind, cls, by_package, tmp_path):
    panel = build_panel("main", kind, "http://127.0.0.1:9/abc", API_KEY, timeout_s=5,
                        state_dir=tmp_path)
    assert isinstance(panel, cls)
    assert (panel.name, panel.kind, panel.caps.extends_by_package) == ("main", kind, by_package)
    assert API_KEY not in repr(panel)


def test_build_panel_refuses_unknown_kinds_and_missing_urls():
    assert set(PANEL_KINDS) == {"xui-admin", "xui-reseller", "xtream-codes", "dry-run"}
    with pytest.raises(ValueError, match="unknown kind 'ministra'"):
        build_panel("main", "ministra", "http://x", API_KEY)
    with pytest.raises(ValueError, match="needs a url"):
        build_panel("main", "xui-admin", "", API_KEY)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_is_transient_and_not_ambiguous():
    panel = XuiAdminPanel("main", f"http://127.0.0.1:{free_port()}/abc", API_KEY, timeout_s=0.3)
    with pytest.raises(PanelError) as caught:
        panel.health()
    error = caught.value
    assert (error.transient, error.ambiguous, error.status) == (True, False, "CONNECT")
    assert API_KEY not in str(error) and error.__cause__ is None


def test_a_slow_panel_times_out_as_ambiguous():
    with FakeXuiAdmin(api_key=API_KEY) as fake:
        fake.latency_s = 0.5
        panel = XuiAdminPanel("main", fake.url, API_KEY, timeout_s=0.2)
        with pytest.raises(PanelError) as caught:
            panel.health()
        assert (caught.value.transient, caught.value.ambiguous, caught.value.status) == \
            (True, True, "TIMEOUT")


@pytest.mark.parametrize(("down", "status"), [(True, "HTTP 503"), ("close", "CONNECTION_LOST")])
def test_a_down_panel_is_transient(down, status):
    with FakeXuiAdmin(api_key=API_KEY) as fake:
        fake.down = down
        with pytest.raises(PanelError) as caught:
            XuiAdminPanel("main", fake.url, API_KEY, timeout_s=1).health()
        assert (caught.value.transient, caught.value.status) == (True, status)


def test_a_wrong_access_code_is_a_permanent_http_error():
    with FakeXuiAdmin(api_key=API_KEY, access_code="abc") as fake:
        panel = XuiAdminPanel("main", fake.root + "/wrong", API_KEY, timeout_s=1)
        with pytest.raises(PanelError) as caught:
            panel.health()
        assert (caught.value.transient, caught.value.status) == (False, "HTTP 404")
        assert "access code" in str(caught.value)


def test_an_admin_key_on_a_reseller_action_reads_as_invalid_action():
    with FakeXuiAdmin(api_key=API_KEY) as fake:
        panel = XuiAdminPanel("main", fake.url, API_KEY, timeout_s=1)
        with pytest.raises(PanelError) as caught:
            panel.call("packages")
        assert caught.value.status == "Invalid action." and not caught.value.transient


def test_redact_hides_secret_keys_at_any_depth():
    reply = {"status": "STATUS_EXISTS_USERNAME",
             "data": {"username": "u", "password": "p", "lines": [{"api_key": "k", "n": 1}]},
             "play_token": ""}
    assert redact(reply) == {"status": "STATUS_EXISTS_USERNAME",
                             "data": {"username": "u", "password": "***",
                                      "lines": [{"api_key": "***", "n": 1}]},
                             "play_token": ""}


@pytest.mark.parametrize(("value", "number"), [
    ("1767225600", 1767225600), (1767225600, 1767225600), (None, None), ("", None),
    ("1.0", 1), (True, 1), ("junk", None)])
def test_as_int_accepts_what_panels_send(value, number):
    assert as_int(value) == number


def test_row_decoding_accepts_strings_ints_and_nulls():
    assert as_bool("0") is False and as_bool(1) is True and as_bool(None, default=True) is True
    assert as_int_list("[1,2]") == [1, 2] and as_int_list(["3", 4]) == [3, 4]
    assert as_int_list("not json") == [] and as_int_list(None) == []
    xui = line_from_row({"id": "7", "username": "u", "password": "p", "exp_date": None,
                         "enabled": "0", "admin_enabled": "0", "max_connections": "3",
                         "bouquet": "[3,1,3]", "is_trial": "1"})
    assert (xui.line_id, xui.expires_at, xui.enabled, xui.banned) == ("7", None, False, True)
    assert (xui.max_connections, xui.bouquets, xui.is_trial) == (3, (1, 3), True)
    player_style = line_from_row({"username": "u", "password": "p", "exp_date": 1757353729,
                                  "is_trial": 0, "max_connections": 1})
    assert (player_style.line_id, player_style.bouquets, player_style.enabled) == (None, None, True)
