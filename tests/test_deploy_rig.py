"""The units under a real systemd (tests/support/rig.py): installed as the guide installs them,
booted, the receiver killed with SIGKILL and back, the timers firing, a failing ``status``
sending its alert (OnFailure=). ``systemd-analyze verify`` proves the units parse; this proves
they run. Skips unless IPTVSYNC_RIG_TESTS=1 on a root machine with systemd-nspawn and debootstrap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import rig

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "pt-BR" / "guia-de-instalacao.md"

HEALTHZ = ("python3 -c \"import urllib.request, sys; r = urllib.request.urlopen('http://127.0.0.1:8080/healthz',"
           " timeout=3); sys.exit(r.status != 200)\"")
IPTVSYNC = "runuser -u iptvsync -- /opt/iptvsync/.venv/bin/iptvsync --config /var/lib/iptvsync/config.toml"
ALERT_EMAIL = "ops@example.com"


@pytest.fixture(scope="module")
def box():
    rig.require()
    with rig.booted({rig.wheelhouse(): "/wheels"}) as machine:
        # the guide's step 1, 2 and 6, with the package from the wheels (the rig has no network)
        machine.run("useradd --system --home-dir /var/lib/iptvsync --create-home --shell /usr/sbin/nologin iptvsync"
                    " && chmod 700 /var/lib/iptvsync && python3 -m venv /opt/iptvsync/.venv"
                    " && /opt/iptvsync/.venv/bin/pip install -q --no-index --find-links /wheels 'iptvsync[replica]'")
        machine.run(f"cd /var/lib/iptvsync && {IPTVSYNC} init")
        machine.run("/opt/iptvsync/.venv/bin/iptvsync --config /var/lib/iptvsync/config.toml deploy systemd"
                    f" --output /etc/systemd/system --alert-email {ALERT_EMAIL}")
        machine.run("systemctl daemon-reload && systemctl enable --now iptvsync-serve.service"
                    " iptvsync-process.timer iptvsync-backup.timer iptvsync-status.timer")
        machine.wait_for(HEALTHZ, "receiver answering /healthz")
        yield machine


def main_pid(machine) -> int:
    return int(machine.run("systemctl show -p MainPID --value iptvsync-serve").stdout)


def test_the_receiver_comes_back_after_kill_9(box):
    first = main_pid(box)
    assert first > 0
    box.run(f"kill -9 {first}")
    box.wait_for(f"pid=$(systemctl show -p MainPID --value iptvsync-serve); [ \"$pid\" -gt 0 ] && [ $pid != {first} ]",
                 "a new receiver process")
    box.wait_for(HEALTHZ, "the restarted receiver answering /healthz")
    assert int(box.run("systemctl show -p NRestarts --value iptvsync-serve").stdout) >= 1


def test_the_process_timer_fires_and_its_run_succeeds(box):
    # OnCalendar every minute: wait for the timer itself to start the service once
    box.wait_for("[ \"$(systemctl show -p LastTriggerUSec --value iptvsync-process.timer)\" != n/a ]"
                 " && [ -n \"$(systemctl show -p LastTriggerUSec --value iptvsync-process.timer)\" ]",
                 "the process timer to fire", timeout=90)
    box.wait_for("[ \"$(systemctl show -p ActiveState --value iptvsync-process.service)\" != activating ]",
                 "the timer's process run to end", timeout=60)
    shown = box.run("systemctl show -p Result -p ExecMainStatus iptvsync-process.service").stdout
    assert "Result=success" in shown and "ExecMainStatus=0" in shown, shown


def test_status_runs_healthy_under_its_unit(box):
    result = box.run("systemctl start iptvsync-status.service", check=False)
    journal = box.run("journalctl -u iptvsync-status --no-pager -n 30").stdout
    assert result.returncode == 0, journal
    assert "healthy" in journal


def test_a_failing_status_sends_the_alert_email(box):
    box.run("systemctl stop iptvsync-serve")
    try:
        failed = box.run("systemctl start iptvsync-status.service", check=False)
        assert failed.returncode != 0
        journal = box.run("journalctl -u iptvsync-status --no-pager -n 30").stdout
        assert "the receiver does not answer at http://127.0.0.1:8080/healthz" in journal, journal
        # OnFailure=iptvsync-alert@%n.service: the alert is written by the configured backend (maildir)
        found = box.wait_for(f"grep -l 'To: {ALERT_EMAIL}' /var/lib/iptvsync/mail/*.eml", "the alert email")
        alert = box.run(f"cat {found.split()[0]}").stdout
        assert "iptvsync-status.service" in alert
    finally:
        box.run("systemctl start iptvsync-serve")
        box.wait_for(HEALTHZ, "the receiver answering again")


def test_litestream_replicates_the_ledger_under_its_sandboxed_unit(box):
    # the guide's "Replicação contínua" commands
    box.run("mkdir -p /var/backups/iptvsync/litestream && chown -R iptvsync: /var/backups/iptvsync")
    box.run("/opt/iptvsync/.venv/bin/iptvsync --config /var/lib/iptvsync/config.toml deploy litestream"
            " --replica /var/backups/iptvsync/litestream --output /etc/systemd/system")
    box.run("systemctl daemon-reload && systemctl enable --now iptvsync-litestream.service")
    box.wait_for("find /var/backups/iptvsync/litestream -name '*.ltx' | grep -q .", "a replicated snapshot")
    assert box.run("systemctl is-active iptvsync-litestream").stdout.strip() == "active"


def test_the_guides_restore_commands_stop_every_timer_and_start_them_again(box):
    restore = GUIDE.read_text("utf-8").split("### Backups e restauração", 1)[1].split("\n### ", 1)[0]
    stop = re.search(r"^systemctl stop .*$", restore, re.M).group(0)
    start = re.search(r"^systemctl start iptvsync-serve.*$", restore, re.M).group(0)
    timers = box.run("systemctl list-units --no-legend --plain --type=timer 'iptvsync-*'").stdout.split()
    timers = [t for t in timers if t.endswith(".timer")]
    assert len(timers) >= 3, timers
    # the guide's stop while a timer's `process` run is under way (as it may well be, every minute)
    box.run("systemctl reset-failed; systemctl start --no-block iptvsync-process.service; for i in $(seq 500); do"
            " [ \"$(systemctl show -p MainPID --value iptvsync-process.service)\" -gt 0 ] && break; sleep 0.01; done;"
            f" {stop}")
    active = box.run("systemctl list-units --no-legend --plain --state=active,activating 'iptvsync-*'").stdout
    assert active.strip() == "", active
    # a planned stop is no failure: no alert email for it (OnFailure=), and nothing opened the ledger
    shown = box.run("systemctl show -p Result iptvsync-process.service").stdout.strip()
    alert = box.run("systemctl show -p InactiveExitTimestampMonotonic --value"
                    " iptvsync-alert@iptvsync-process.service.service").stdout.strip()
    assert shown == "Result=success" and alert == "0", (shown, alert)  # 0: the alert never started
    box.run(start)
    for unit in [*timers, "iptvsync-serve.service"]:
        assert box.run(f"systemctl is-active {unit}", check=False).stdout.strip() == "active", unit
    box.wait_for(HEALTHZ, "the receiver answering again")


def test_the_units_report_no_failure(box):
    failed = json.loads(box.run("systemctl list-units --failed --output=json 'iptvsync-*'").stdout or "[]")
    assert [u["unit"] for u in failed if u["unit"] != "iptvsync-status.service"] == []
