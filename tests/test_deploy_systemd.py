"""`iptvsync deploy systemd`: units rendered for this install, checked by systemd-analyze verify."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from support import binaries
from support.binaries import need
from support.install import BASE_TOML, write_install
from support.ops import IPTVSYNC, cli


def render(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[Path, Path, dict[str, str]]:
    config = write_install(tmp_path / "install", BASE_TOML, env=env)
    assert cli(config, "init").returncode == 0
    units = tmp_path / "units"
    result = cli(config, "deploy", "systemd", "--output", str(units), *args)
    assert result.returncode == 0, result.stderr
    return config, units, {p.name: p.read_text() for p in sorted(units.iterdir())}


def verify(units: Path) -> None:
    result = subprocess.run([need("systemd-analyze"), "verify", *sorted(map(str, units.iterdir()))],
                            capture_output=True, text=True, timeout=60)
    # unknown keys and bad values are only warnings with exit 0: stderr must be empty too
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_units_for_this_install_pass_systemd_analyze_verify(tmp_path):
    config, units, files = render(tmp_path)
    assert sorted(files) == ["iptvsync-backup.service", "iptvsync-backup.timer", "iptvsync-process.service",
                             "iptvsync-process.timer", "iptvsync-serve.service", "iptvsync-status.service",
                             "iptvsync-status.timer"]
    verify(units)
    serve = files["iptvsync-serve.service"]
    for line in ("User=iptvsync", "Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", f"ReadWritePaths={config.parent}",
                 f"ExecStart={IPTVSYNC} --config {config} serve", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in serve.splitlines(), line
    # no StandardOutput= anywhere: everything goes to the journal
    assert not any("StandardOutput" in text for text in files.values())
    assert "OnCalendar=*-*-* *:*:00" in files["iptvsync-process.timer"]


def test_every_unit_kind_with_reconcile_and_alerts_passes_verify(tmp_path):
    _, units, files = render(tmp_path, "--user", "shop", "--keep", "7", "--alert-email", "ops@loja.example",
                             env={"MONETIZZE_CONSUMER_KEY": "token"})
    assert {"iptvsync-reconcile.timer", "iptvsync-reconcile-daily.service", "iptvsync-alert@.service"} <= set(files)
    verify(units)
    assert "OnFailure=iptvsync-alert@%n.service" in files["iptvsync-process.service"]
    assert "User=shop" in files["iptvsync-backup.service"] and "--keep 7" in files["iptvsync-backup.service"]


def test_the_units_command_lines_run_against_this_install(tmp_path, start):
    """What systemd would run (ExecStart=, no %/$ specifiers in them) works here (``status``: with
    the receiver running, as the serve unit keeps it)."""
    config, _, files = render(tmp_path)
    env = {**os.environ, "IPTVSYNC_STATUS_RECEIVER_URL": start(config).url}
    for name in ("iptvsync-process.service", "iptvsync-backup.service", "iptvsync-status.service"):
        for line in re.findall(r"^ExecStart=(.*)$", files[name], re.M):
            result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=60,
                                    cwd=config.parent, env=env)
            assert result.returncode == 0, (name, result.stderr)
    assert len(list((config.parent / "backups").glob("iptvsync-*.db"))) == 1


def test_stdout_prints_the_units_and_writes_nothing(tmp_path):
    config = write_install(tmp_path / "install")
    result = cli(config, "deploy", "systemd", "--stdout", "--output", str(tmp_path / "units"))
    assert result.returncode == 0 and "# ---- iptvsync-serve.service" in result.stdout
    assert not (tmp_path / "units").exists()


def test_a_receiver_on_port_443_may_bind_it(tmp_path):
    config = write_install(tmp_path / "install", BASE_TOML.replace("port = 0", "port = 443"))
    serve = cli(config, "deploy", "systemd", "--stdout").stdout.split("# ---- ")[1]
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in serve


def test_logrotate_file_for_the_cron_path(tmp_path):
    """deploy/logrotate/iptvsync rotates the cron jobs' logs (a tmp copy, run as the caller)."""
    import getpass
    import grp
    import os

    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "process.log").write_text("x\n" * 1000)
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    text = (Path(__file__).parent.parent / "deploy" / "logrotate" / "iptvsync").read_text()
    assert "/var/log/iptvsync/*.log" in text and "maxsize" in text
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text.replace("/var/log/iptvsync", str(logs)).replace("iptvsync iptvsync", f"{user} {group}"))
    conf.chmod(0o644)
    logrotate = need("logrotate")
    state = tmp_path / "state"
    result = subprocess.run([logrotate, "-f", "-s", str(state), str(conf)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rotated = [p.name for p in logs.iterdir() if p.name.startswith("process.log-")]
    assert len(rotated) == 1 and (logs / "process.log").stat().st_size == 0


def test_deploy_systemd_names_what_would_stop_the_units_here(tmp_path):
    config = write_install(tmp_path / "install")
    missing = cli(config, "deploy", "systemd", "--output", str(tmp_path / "u"), "--user", "no-such-user-here")
    assert "note: user no-such-user-here does not exist: useradd --system" in missing.stdout
    other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != config.stat().st_uid)
    wrong_owner = cli(config, "deploy", "systemd", "--output", str(tmp_path / "u"), "--user", other)
    assert f"is not owned by {other}: chown -R {other}:" in wrong_owner.stdout


def test_a_missing_binary_fails_with_the_command_that_installs_it_when_required(monkeypatch):
    monkeypatch.setitem(binaries.INSTALL, "iptvsync-no-such-tool", "apt-get install -y iptvsync-no-such-tool")
    monkeypatch.setenv("IPTVSYNC_REQUIRE_SYSTEM_TESTS", "1")
    with pytest.raises(pytest.fail.Exception, match="install it with: apt-get install -y iptvsync-no-such-tool"):
        binaries.need("iptvsync-no-such-tool")


def test_a_missing_binary_skips_and_the_run_ends_with_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(binaries.INSTALL, "iptvsync-no-such-tool", "apt-get install -y iptvsync-no-such-tool")
    monkeypatch.setattr(binaries, "skipped", {})
    monkeypatch.delenv("IPTVSYNC_REQUIRE_SYSTEM_TESTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install it with: apt-get install -y iptvsync-no-such-tool") as one:
        binaries.need("iptvsync-no-such-tool")
    with pytest.raises(pytest.skip.Exception):
        binaries.need("iptvsync-no-such-tool")
    # the run's end reads the skip reasons (the workers' under pytest-xdist), not this process's count
    reasons = [f"Skipped: {one.value.msg}"] * 2 + ["Skipped: another reason"]
    assert binaries.summary(binaries.counted(reasons)) == binaries.summary() == (
        "2 test(s) skipped, system binaries missing: iptvsync-no-such-tool (2); install with: sudo apt-get install"
        " -y iptvsync-no-such-tool  (IPTVSYNC_REQUIRE_SYSTEM_TESTS=1 makes them fail instead)")


def test_a_venv_or_data_under_a_home_folder_stays_readable(tmp_path):
    from iptvsync.config import load_config
    from iptvsync.ops.deploy import systemd_units

    cfg = load_config(write_install(tmp_path / "install"))
    units = systemd_units(cfg, iptvsync_bin=Path("/home/loja/iptvsync/.venv/bin/iptvsync"))
    assert all("ProtectHome=read-only" in u.text for u in units if u.name.endswith(".service"))
    units = systemd_units(cfg, iptvsync_bin=Path("/opt/iptvsync/.venv/bin/iptvsync"))
    assert all("ProtectHome=yes" in u.text for u in units if u.name.endswith(".service"))


def test_a_planned_stop_of_a_job_is_a_clean_end_not_an_alert(tmp_path):
    """`systemctl stop` (the guide's restore) SIGTERMs a running job; for a oneshot that is a
    failure unless said otherwise, and OnFailure= would email an alert mid-restore. The rig test
    (tests/test_deploy_rig.py) shows it under a real systemd; this keeps the line in every job."""
    _, _, files = render(tmp_path, "--alert-email", "ops@loja.example")
    jobs = [name for name, text in files.items() if name.endswith(".service") and "Type=oneshot" in text
            and not name.startswith("iptvsync-alert@")]
    assert len(jobs) >= 3
    for name in jobs:
        assert "SuccessExitStatus=SIGTERM" in files[name].splitlines(), name
    assert "SuccessExitStatus" not in files["iptvsync-serve.service"]
def test_the_admin_console_unit_is_rendered_on_request_and_verifies(tmp_path):
    config, units, files = render(tmp_path, "--admin")
    admin = files["iptvsync-admin.service"]
    assert f"ExecStart={IPTVSYNC} --config {config} admin serve" in admin
    assert "ProtectSystem=strict" in admin and "CapabilityBoundingSet=\n" in admin
    assert "iptvsync-admin.service" not in render(tmp_path / "plain")[2]  # only when asked
    verify(units)
