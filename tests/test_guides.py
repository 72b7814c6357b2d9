"""The installation guides run as written: every code block marked ```sh run``` is executed, in
order, against a temporary install that stands in for the VPS.

Blocks marked plain ```sh``` need root or the network (apt-get, useradd, systemctl, certbot) and
are only shown. The stand-in: the guide's paths (/var/lib/iptvsync, /etc/systemd/system, …) are
moved under a temp folder, the venv is this one, and `sudo -u iptvsync ` is dropped (the test
runs as one user). `run serve` blocks need the receiver running, as systemd would keep it;
`run stopped` blocks need it stopped. Shell functions and exports from earlier blocks carry over.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.install import wait_for
from support.serve import free_port

ROOT = Path(__file__).resolve().parent.parent
GUIDES = [ROOT / "docs" / "pt-BR" / "guia-de-instalacao.md", ROOT / "docs" / "operations.md"]
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CARRIED = re.compile(r"^(export \w+=.*|\w+\(\) \{.*\}\s*)$", re.MULTILINE)


def blocks(guide: Path) -> list[tuple[set[str], str]]:
    """(markers, code) of each ```sh run …``` block."""
    out = []
    for lang, info, code in BLOCK.findall(guide.read_text("utf-8")):
        markers = set(info.split())
        if lang == "sh" and "run" in markers:
            out.append((markers, code))
    return out


def stand_in(code: str, root: Path) -> str:
    venv_bin = str(Path(sys.executable).parent)
    for old, new in [("sudo -u iptvsync ", ""), ("/opt/iptvsync/.venv/bin", venv_bin),
                     ("/var/lib/iptvsync", f"{root}/var/lib/iptvsync"),
                     ("/var/backups/iptvsync", f"{root}/var/backups/iptvsync"),
                     ("/etc/systemd/system", f"{root}/etc/systemd/system")]:
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_tested_commands_run_as_written(guide, tmp_path):
    from support.binaries import need

    need("systemd-analyze")  # the guides verify the units they write
    todo = blocks(guide)
    assert len(todo) >= 8, f"{guide.name}: too few ```sh run``` blocks"
    data = tmp_path / "var" / "lib" / "iptvsync"
    data.mkdir(parents=True, mode=0o700)  # useradd --create-home + chmod 700 (root-only, shown only)
    (tmp_path / "var" / "backups" / "iptvsync").mkdir(parents=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("IPTVSYNC_", "MONETIZZE_", "SMTP_"))},
           "IPTVSYNC_RECEIVER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    carried, server, ran = "", None, []
    try:
        for markers, code in todo:
            if "serve" in markers and server is None:
                log = tmp_path / "serve.log"
                with open(log, "w") as sink:
                    server = subprocess.Popen([sys.executable, "-m", "iptvsync", "--config",
                                               str(data / "config.toml"), "serve"], env=env, cwd=data,
                                              stdout=subprocess.DEVNULL, stderr=sink)
                wait_for(lambda proc=server, log=log: proc.poll() is not None
                         or "iptvsync receiver on" in log.read_text(), "the receiver to listen", timeout=30)
                assert server.poll() is None, log.read_text()
            if "stopped" in markers and server is not None:
                server.send_signal(signal.SIGTERM)
                assert server.wait(timeout=30) == 0
                server = None
            script = stand_in(code, tmp_path)
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", carried + script], env=env, cwd=tmp_path,
                                    capture_output=True, text=True, timeout=180)
            assert result.returncode == 0, f"{guide.name}: this block failed:\n{code}\n{result.stdout}{result.stderr}"
            assert "Traceback" not in result.stderr
            ran.append(code)
            carried += "".join(m.group(0).rstrip() + "\n" for m in CARRIED.finditer(script))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    # what the guide promised is there: units, a backup, a rehearsal email, a rotated key
    units = {p.name for p in (tmp_path / "etc" / "systemd" / "system").iterdir()}
    assert {"iptvsync-serve.service", "iptvsync-process.timer", "iptvsync-litestream.service"} <= units
    assert list((data / "backups").glob("iptvsync-*.db"))
    assert any(b"Ensaio iptvsync" in p.read_bytes() for p in (data / "mail").glob("*.eml"))


def test_the_readme_points_to_the_guides_and_stays_short():
    readme = (ROOT / "README.md").read_text("utf-8")
    going_live = readme.split("## Going live", 1)[1].split("\n## ", 1)[0]
    assert "docs/pt-BR/guia-de-instalacao.md" in going_live and "docs/operations.md" in going_live
    assert len(going_live.strip().splitlines()) <= 15


def test_ci_installs_the_system_packages_the_readme_and_the_tests_name():
    """.ci/run installs, before the README's test command, exactly the packages the README tells a
    developer to install and the ones tests/support/binaries.py names when a binary is missing."""
    from support.binaries import INSTALL

    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    ci_packages = set(re.search(r'^PACKAGES="([^"]+)"', ci, re.M).group(1).split())
    assert "$PACKAGES" in ci and ci.index("$PACKAGES") < ci.index(".venv/bin/pytest")
    readme = (ROOT / "README.md").read_text("utf-8")
    readme_packages = set(re.search(r"apt-get install -y ([a-z0-9 -]+)`", readme).group(1).split())
    tests_packages = {cmd.split()[-1] for cmd in INSTALL.values() if cmd.startswith("apt-get install")}
    assert readme_packages == ci_packages == tests_packages


def test_ci_requires_the_system_tests_after_installing_them_and_the_readme_says_they_skip():
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    required = ci.index("export IPTVSYNC_REQUIRE_SYSTEM_TESTS=1")
    assert ci.index("apt-get -o DPkg::Lock::Timeout=120 install") < required < ci.index(".venv/bin/pytest")
    assert "--durations=15" in ci  # who pays for the suite's time, in every CI log
    readme = " ".join((ROOT / "README.md").read_text("utf-8").split())
    assert "those tests skip and the run ends with one line naming the install command" in readme
    assert "`IPTVSYNC_REQUIRE_SYSTEM_TESTS=1`, which .ci/run sets, fails them instead" in readme


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_test_button_is_checked_after_the_receiver_is_started(guide):
    """Monetizze's test button needs a running receiver: its `inbox list` check comes after the
    units are started, not in the Monetizze section before them (issue 18)."""
    text = guide.read_text("utf-8")
    started = text.index("systemctl enable --now iptvsync-serve.service")
    checked = text.index("```sh run\niptvsync inbox list\n```")
    assert started < checked
    assert "wrong\nchave_unica" in text or "wrong chave_unica" in text  # what status says when the key is not theirs


def test_the_guide_says_what_to_do_on_ubuntu_22_04_and_what_seu_usuario_is():
    text = " ".join(GUIDES[0].read_text("utf-8").split())
    assert "Ubuntu 22.04" in text and "python3.11 -m venv /opt/iptvsync/.venv" in text
    assert "apt-get install -y python3.11 python3.11-venv" in text
    assert "`SEU-USUARIO`: troque pela conta" in text


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_restore_stops_every_unit_not_two(guide):
    """Any timer left running (status, backup, reconcile) opens the ledger mid-restore. The rig
    test runs these very commands under systemd (tests/test_deploy_rig.py)."""
    text = guide.read_text("utf-8")
    assert "systemctl stop 'iptvsync-*'" in text
    assert "systemctl stop iptvsync-serve iptvsync-process.timer" not in " ".join(text.split())
    assert "list-unit-files --no-legend --state=enabled 'iptvsync-*.timer'" in text


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_rekey_stops_what_restore_stops(guide):
    """Stopping the serve and the timers leaves a `process` run a timer already started and
    Litestream holding the ledger: rekey's refusal and the guides say stop every unit."""
    from iptvsync.ledger.lock import STOP_HINT

    text = guide.read_text("utf-8")
    assert STOP_HINT.startswith("sudo systemctl stop 'iptvsync-*',")
    assert "systemctl stop iptvsync-serve 'iptvsync-*.timer'" not in text
    rekey = text[text.index("iptvsync rekey\n") - 300:text.index("iptvsync rekey\n")]
    assert "systemctl stop 'iptvsync-*'" in rekey
COMMAND_GUIDES = [*sorted((ROOT / "docs" / "pt-BR").glob("*.md")), ROOT / "docs" / "operations.md",
                  ROOT / "docs" / "whatsapp.md"]
SHORTCUT = ('iptvsync() { (cd /var/lib/iptvsync && sudo -u iptvsync /opt/iptvsync/.venv/bin/iptvsync'
            ' --config /var/lib/iptvsync/config.toml "$@"); }')
FENCED = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
SUDO_FUNCTION = re.compile(r"\bsudo(?:\s+-u\s+\S+)?\s+iptvsync(?:\s|$)")
BARE_BINARY = re.compile(r"/opt/iptvsync/\.venv/bin/iptvsync(?=\s+\S)(?!\s+--config /var/lib/iptvsync/config\.toml\s)")


def commands(text: str) -> list[str]:
    """Each line of the shell blocks (indented ones too), and each `inline code` span of the prose."""
    lines = [line for lang, code in FENCED.findall(text) if lang in ("", "sh", "bash") for line in code.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", FENCED.sub("", text))


def wrong_commands(text: str) -> list[str]:
    """Commands that fail when copied: sudo cannot run the `iptvsync` shell function of section 1;
    the binary without --config, or run as iptvsync from root's folder, finds no config."""
    return [cmd for cmd in commands(text) if SUDO_FUNCTION.search(cmd) or BARE_BINARY.search(cmd)
            or ("sudo -u iptvsync /" in cmd and "cd /var/lib/iptvsync && sudo -u iptvsync /" not in cmd)]


@pytest.mark.parametrize("guide", COMMAND_GUIDES, ids=lambda p: p.relative_to(ROOT / "docs").as_posix())
def test_every_iptvsync_command_runs_the_way_section_1_sets_it_up(guide):
    text = guide.read_text("utf-8")
    assert wrong_commands(text) == []
    if guide in GUIDES:
        assert f"```sh run\n{SHORTCUT}\n" in text


def test_the_command_check_catches_what_a_newcomer_copied_and_failed():
    assert wrong_commands("```sh\nsudo -u iptvsync iptvsync subs import --product 145388 --dry-run\n```\n")
    assert wrong_commands("```sh\nsudo -u iptvsync /opt/iptvsync/.venv/bin/iptvsync doctor\n```\n")
    assert wrong_commands("run `sudo -u iptvsync /opt/iptvsync/.venv/bin/iptvsync --config"
                          " /var/lib/iptvsync/config.toml status` from /root")
    assert wrong_commands(f"```sh run\n{SHORTCUT}\niptvsync doctor\n```\n") == []
    assert wrong_commands("`sudo -u iptvsync` in front of it, `sudo systemctl stop iptvsync-serve`") == []


def test_the_import_chapter_documents_the_csv_format_with_an_example():
    chapter = GUIDES[0].read_text("utf-8").split("## Já tenho clientes", 1)[1].split("\n## ", 1)[0]
    for column in ("`email`", "`product`", "`username`", "`paid_until`", "`subscription`", "`password`", "`line_id`"):
        assert column in chapter, column
    assert "DD/MM/AAAA" in chapter and "AAAA-MM-DD" in chapter
    example = chapter.split("<<'CSV'\n", 1)[1].split("\nCSV\n", 1)[0].splitlines()
    assert example[0] == "email,product,username,paid_until,subscription"
    dates = [row.split(",")[3] for row in example[1:]]
    assert any(re.fullmatch(r"\d\d/\d\d/\d{4}", d) for d in dates) and any(
        re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in dates)
    assert "```sh run\ncat > /var/lib/iptvsync/clientes.csv" in chapter  # the test above runs it


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_status_probes_the_receiver_itself_and_the_guides_say_what_each_check_covers(guide):
    """The shipped proxies answer /healthz to 127.0.0.1 only: a `receiver_url` of the public
    domain would get 403 forever. The guides check the proxy with curl over loopback instead, and
    say in one table what status and doctor each look at (doctor exits 0 while the receiver is down)."""
    text = guide.read_text("utf-8")
    assert not re.search(r'receiver_url = "https://(SEU-DOMINIO|DOMAIN)', text)
    assert re.search(r"curl -fsS --resolve (SEU-DOMINIO|DOMAIN):443:127\.0\.0\.1 https://(SEU-DOMINIO|DOMAIN)/healthz",
                     text)
    table = [line for line in text.splitlines() if line.lstrip().startswith("| `iptvsync status` |")
             or line.lstrip().startswith("| `iptvsync doctor` |")]
    assert len(table) == 2 and "/healthz" in table[0] and "0" in table[1]
