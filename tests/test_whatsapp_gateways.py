"""Z-API and Meta's Cloud API through ``process`` (Evolution: test_whatsapp_flow.py), each
against its fake on loopback, and what every gateway shares: pacing, rate limits."""

from __future__ import annotations

import pytest
from support.install import BASE_TOML, write_install
from support.whatsapp import FakeCloudApi, FakeEvolution, FakeZapi
from test_whatsapp_flow import buy, evolution_install, rows

from iptvsync.clock import now
from iptvsync.config import load_config
from iptvsync.credentials import decrypt
from iptvsync.engine.runner import run_process
from iptvsync.engine.whatsapp_stage import send_whatsapp
from iptvsync.ledger.db import Ledger
from iptvsync.mail.whatsapp import CLOUD_PARAMS

FAST = 'channels = ["email", "whatsapp"]\nper_minute = 6000\njitter_ms = 0\ntimeout_s = 2\n'


def zapi_install(tmp_path, fake: FakeZapi, client_token: str | None = None):
    toml = BASE_TOML + f'\n[whatsapp]\ngateway = "z-api"\nurl = "{fake.url}"\ninstance = "{fake.instance}"\n' + FAST
    env = {"WHATSAPP_TOKEN": fake.token, "WHATSAPP_CLIENT_TOKEN": client_token or fake.client_token}
    return load_config(write_install(tmp_path / "i", toml, env=env))


def cloud_install(tmp_path, fake: FakeCloudApi, token: str | None = None, extra: str = ""):
    toml = BASE_TOML + (f'\n[whatsapp]\ngateway = "cloud-api"\nurl = "{fake.url}"\n'
                        f'phone_number_id = "{fake.phone_number_id}"\n' + FAST + extra)
    return load_config(write_install(tmp_path / "i", toml, env={"WHATSAPP_TOKEN": token or fake.token}))


def approved() -> dict[str, int]:
    return {f"iptvsync_{kind}": len(params) for kind, params in CLOUD_PARAMS.items()}


# --- Z-API ---------------------------------------------------------------------------------------

def test_zapi_sends_the_activation_once(tmp_path):
    with FakeZapi() as fake:
        cfg = zapi_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        assert run_process(cfg)["whatsapp"]["sent"] == 1
        run_process(cfg)
        [sent] = fake.sent
        sub = ledger.one("SELECT * FROM subscriptions")
        assert sent["to"] == "5511987654321" and decrypt(sub["password_enc"], cfg.secrets.secret_key) in sent["text"]
        request = next(r for r in fake.requests if r["method"] == "POST")
        assert request["headers"]["Client-Token"] == fake.client_token
        assert request["path"] == f"/instances/{fake.instance}/token/{fake.token}/send-text"
        assert rows(ledger)[0]["message_id"] == sent["id"]


def test_zapi_client_token_refused_halts_backs_off_and_keeps_the_token_out_of_the_reason(tmp_path):
    with FakeZapi() as fake:
        cfg = zapi_install(tmp_path, fake, client_token="wrong")
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="21 99876-5432")
        summary = run_process(cfg)
        assert summary["whatsapp"]["halted"] == 1 and fake.sent == []
        first, second = rows(ledger)
        assert first["status"] == "pending" and "client-token is not configured" in first["last_error"]
        assert fake.token not in first["last_error"] and second["attempts"] == 0


# --- Cloud API -----------------------------------------------------------------------------------

def test_cloud_api_sends_the_kinds_template_with_its_variables(tmp_path):
    with FakeCloudApi(templates=approved()) as fake:
        cfg = cloud_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        assert run_process(cfg)["whatsapp"]["sent"] == 1
        [sent] = fake.sent
        sub = ledger.one("SELECT * FROM subscriptions")
        password = decrypt(sub["password_enc"], cfg.secrets.secret_key)
        assert sent["template"] == "iptvsync_activation" and sent["language"] == "pt_BR"
        assert sent["params"][:4] == ["Maria", "IPTV Mensal", sub["username"], password]
        assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {fake.token}"
        assert rows(ledger)[0]["message_id"].startswith("wamid.")


def test_cloud_api_unapproved_template_fails_that_message_only(tmp_path):
    with FakeCloudApi(templates=approved()) as fake:
        cfg = cloud_install(tmp_path, fake, extra='\n[whatsapp.cloud_templates]\nactivation = "acesso_liberado"\n')
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        [row] = rows(ledger)
        assert row["status"] == "failed" and "#132001" in row["last_error"] and fake.sent == []


@pytest.mark.parametrize("mode,status,unknowns", [("429", "pending", 0), ("500", "failed", 1)])
def test_cloud_api_rate_limit_backs_off_and_a_500_is_an_unknown_outcome(tmp_path, mode, status, unknowns):
    with FakeCloudApi(templates=approved()) as fake:
        fake.fail_next(1, mode)
        cfg = cloud_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="21 99876-5432")
        summary = run_process(cfg)
        first, second = rows(ledger)
        assert first["status"] == status and first["unknowns"] == unknowns and first["run_after"]
        if mode == "429":  # the gateway's limit: nobody else is tried this run
            assert "#130429" in first["last_error"] and summary["whatsapp"]["halted"] == 1
            assert second["attempts"] == 0
        else:  # one message's unknown outcome does not stop the others
            assert second["status"] == "sent"


def test_cloud_api_expired_token_halts(tmp_path):
    with FakeCloudApi(templates=approved()) as fake:
        cfg = cloud_install(tmp_path, fake, token="EAAG-old")
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        assert run_process(cfg)["whatsapp"]["halted"] == 1
        [row] = rows(ledger)
        assert row["status"] == "pending" and "#190" in row["last_error"] and "EAAG-old" not in row["last_error"]


# --- every gateway -----------------------------------------------------------------------------

def test_sends_are_paced_with_jitter(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        cfg.path.write_text(cfg.path.read_text().replace("per_minute = 6000\njitter_ms = 0",
                                                         "per_minute = 30\njitter_ms = 500"))
        cfg = load_config(cfg.path)
        ledger = Ledger(cfg.ledger_path)
        for n in range(3):
            buy(ledger, sale=f"5100000{n}", subscription=f"110437{n}", email=f"b{n}@example.com",
                phone=f"11 9876{n}-4321")
        from iptvsync.engine.apply import apply_inbox
        from iptvsync.engine.runner import build_panels
        from iptvsync.engine.sync import sync_panels
        from iptvsync.engine.whatsapp_stage import _LAST_SEND

        _LAST_SEND.clear()
        apply_inbox(ledger, cfg, now())
        sync_panels(cfg.ledger_path, cfg, build_panels(cfg), now(), None)
        pauses: list[float] = []
        counts = send_whatsapp(ledger, cfg, now(), sleep=pauses.append)
        assert counts["sent"] == 3 and len(fake.sent) == 3
        assert len(pauses) == 2 and all(2.0 - 0.5 <= p <= 2.0 + 0.5 for p in pauses)  # 60/30 s, plus jitter
        assert len(set(pauses)) == 2  # jittered: not one fixed beat


def test_a_time_budget_ends_the_round_and_leaves_the_rest_for_the_next_run(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        for n in range(3):
            buy(ledger, sale=f"5100000{n}", subscription=f"110437{n}", email=f"b{n}@example.com",
                phone=f"11 9876{n}-4321")
        from iptvsync.engine.apply import apply_inbox
        from iptvsync.engine.runner import build_panels
        from iptvsync.engine.sync import sync_panels

        apply_inbox(ledger, cfg, now())
        sync_panels(cfg.ledger_path, cfg, build_panels(cfg), now(), None)
        counts = send_whatsapp(ledger, cfg, now(), budget_s=0)
        assert counts["sent"] == 0 and counts["more"] == 1 and fake.sent == []
        asked = []
        counts = send_whatsapp(ledger, cfg, now(), stop=lambda: asked.append(1) or len(asked) > 1)
        assert counts["sent"] == 1  # a fresh payment came in: the round gave way after one
