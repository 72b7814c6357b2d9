"""DryRunPanel: a simulated panel that converges, persists and never records a password."""

import json
import stat

import pytest

from iptvsync.errors import PanelError
from iptvsync.panels.base import LineSpec
from iptvsync.panels.dry_run import DryRunPanel

PASSWORD = "Pw0rdSecretXyz1"


def spec_for(**changes) -> LineSpec:
    values = dict(username="iptv000000012", password=PASSWORD, expires_at=1_900_000_000,
                  enabled=True, max_connections=2, bouquets=(3, 1), notes="iptvsync sub 12")
    return LineSpec(**{**values, **changes})


def test_in_memory_round_trip():
    panel = DryRunPanel("main")
    assert panel.get("iptv000000012", PASSWORD) is None
    line = panel.create(spec_for())
    assert (line.line_id, line.username, line.password) == ("1", "iptv000000012", PASSWORD)
    assert (line.expires_at, line.max_connections, line.bouquets) == (1_900_000_000, 2, (1, 3))
    updated = panel.update(line, spec_for(expires_at=1_950_000_000, enabled=False))
    assert (updated.expires_at, updated.enabled) == (1_950_000_000, False)
    assert panel.get("iptv000000012", PASSWORD) == updated
    assert panel.health() == {"ok": True}
    assert (panel.kind, panel.caps.real, panel.caps.extends_by_package) == ("dry-run", False, False)


def test_state_persists_across_instances_and_files_hold_no_password(tmp_path):
    first = DryRunPanel("main", state_dir=tmp_path)
    line = first.create(spec_for())
    second = DryRunPanel("main", state_dir=tmp_path)
    assert second.get("iptv000000012", PASSWORD) == line
    second.update(line, spec_for(enabled=False))
    second.close()
    state, log = tmp_path / "dry-run-main.db", tmp_path / "dry-run-main.log"
    for path in (state, log):
        assert PASSWORD.encode() not in path.read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = [json.loads(text) for text in log.read_text().splitlines()]
    assert [e["call"] for e in entries] == ["create", "update"]
    assert entries[0]["expires"] == "2030-03-17T17:46:40Z" and entries[0]["bouquets"] == [3, 1]
    assert {p.name for p in tmp_path.iterdir()} <= {"dry-run-main.db", "dry-run-main.db-wal", "dry-run-main.db-shm",
                                                    "dry-run-main.log"}
    assert list(DryRunPanel("main", state_dir=tmp_path).lines()) == ["iptv000000012"]


def test_a_wrong_password_reads_back_as_empty(tmp_path):
    panel = DryRunPanel("main", state_dir=tmp_path)
    panel.create(spec_for())
    assert panel.get("iptv000000012", "another-password").password == ""


def test_create_twice_is_ambiguous_like_a_real_panel():
    panel = DryRunPanel("main")
    panel.create(spec_for())
    with pytest.raises(PanelError) as caught:
        panel.create(spec_for())
    assert caught.value.ambiguous and caught.value.status == "EXISTS"


def test_panels_keep_separate_state(tmp_path):
    DryRunPanel("a", state_dir=tmp_path).create(spec_for())
    assert DryRunPanel("b", state_dir=tmp_path).get("iptv000000012", PASSWORD) is None


def test_a_line_is_found_by_its_index_whatever_the_number_of_lines(tmp_path):
    """A call reads one row by the username's unique index: the same work at 100 or 100,000 lines."""
    panel = DryRunPanel("main", state_dir=tmp_path)
    panel.create(spec_for())
    plan = [row[3] for row in panel._db().execute(
        "EXPLAIN QUERY PLAN SELECT * FROM lines WHERE username = ?", ("x",))]
    assert plan == ["SEARCH lines USING INDEX sqlite_autoindex_lines_1 (username=?)"]


def test_the_log_is_rotated_past_its_size(tmp_path, monkeypatch):
    from iptvsync.panels import dry_run

    monkeypatch.setattr(dry_run, "LOG_MAX_BYTES", 600)
    panel = DryRunPanel("main", state_dir=tmp_path)
    line = panel.create(spec_for())
    for days in range(1, 8):
        panel.update(line, spec_for(expires_at=1_900_000_000 + days * 86400))
    log, old = tmp_path / "dry-run-main.log", tmp_path / "dry-run-main.log.1"
    assert old.exists() and log.stat().st_size < 600 + 400 and old.stat().st_size < 600 + 400
    last = json.loads(log.read_text().splitlines()[-1])
    assert (last["call"], last["exp_date"]) == ("update", 1_900_000_000 + 7 * 86400)


def test_lines_of_the_json_state_are_imported_once(tmp_path):
    from iptvsync.panels.dry_run import password_hash

    row = {"id": "7", "username": "iptv000000012", "salt": "ab", "password_hash": password_hash("ab", PASSWORD),
           "exp_date": 1_900_000_000, "enabled": True, "max_connections": 2, "bouquets": [3, 1],
           "package": None, "notes": "iptvsync sub 12"}
    (tmp_path / "dry-run-main.json").write_text(json.dumps({"next_id": 8, "lines": {row["username"]: row}}))
    panel = DryRunPanel("main", state_dir=tmp_path)
    line = panel.get("iptv000000012", PASSWORD)
    assert (line.line_id, line.password, line.bouquets, line.enabled) == ("7", PASSWORD, (1, 3), True)
    assert not (tmp_path / "dry-run-main.json").exists() and (tmp_path / "dry-run-main.json.imported").exists()
    assert panel.create(spec_for(username="iptv000000013")).line_id == "8"


def test_a_read_before_any_line_creates_no_file(tmp_path):
    """``process --dry-run`` reads through the real adapter: a fresh install stays untouched."""
    assert DryRunPanel("main", state_dir=tmp_path).get("iptv000000012", PASSWORD) is None
    assert list(tmp_path.iterdir()) == []
