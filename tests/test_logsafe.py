"""No panel URL access code, API key or chave_unica in any log line, even with ``-v``.

urllib3 logs each request's path at DEBUG, and an XUI panel's URL carries its access code in
the path: ``iptvsync -v process`` and ``-v doctor`` against a fake XUI.one panel must not show it.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from support.install import BASE_TOML, CHAVE, write_install
from support.postbacks import deliver, payload
from support.xui import FakeXuiAdmin

from iptvsync.clock import SAO_PAULO, now
from iptvsync.config import load_config
from iptvsync.ledger.db import Ledger
from iptvsync.logsafe import RedactSecrets, url_secrets

ACCESS_CODE = "Xq7Lw2Pz9Kd"
API_KEY = "ApiKey5eCr3tValue77"


def test_verbose_process_and_doctor_never_log_the_access_code_or_key(tmp_path):
    with FakeXuiAdmin(api_key=API_KEY, access_code=ACCESS_CODE) as fake:
        toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{fake.url}"')
        config = write_install(tmp_path / "i", toml, env={"PANEL_MAIN_API_KEY": API_KEY})
        deliver(Ledger(load_config(config).ledger_path),
                payload(2, paid=now().astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")))
        outputs = []
        for args in (["process"], ["doctor"]):
            result = subprocess.run([sys.executable, "-m", "iptvsync", "-v", "--config", str(config), *args],
                                    capture_output=True, text=True, timeout=60)
            outputs.append(result.stdout + result.stderr)
        assert fake.lines, "process created the line (the calls were made and logged)"
    text = "\n".join(outputs)
    assert "urllib3" in text and "DEBUG" in text  # -v did log the requests...
    assert ACCESS_CODE not in text and API_KEY not in text  # ...without their secrets
    assert "/***/" in text


def test_the_filter_blanks_secrets_in_messages_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling %s with %s", (
        f"http://panel:8080/{ACCESS_CODE}/?api_key={API_KEY}", CHAVE), None)
    try:
        raise RuntimeError(f"failed at /{ACCESS_CODE}/")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    secrets = url_secrets(f"http://user:pw1234@panel:8080/{ACCESS_CODE}/?api_key={API_KEY}") | {CHAVE}
    RedactSecrets(secrets).filter(record)
    text = logging.Formatter().format(record)
    assert ACCESS_CODE not in text and API_KEY not in text and CHAVE not in text and "pw1234" not in text
    assert "calling http://panel:8080/***/?api_key=*** with ***" in text


def test_plain_path_segments_are_not_secrets():
    assert url_secrets("http://panel.example.com/player_api.php") == set()
    assert url_secrets("https://panel.example.com:8443/admin/Ab12Cd") == {"Ab12Cd"}
