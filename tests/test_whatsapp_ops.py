"""What operators see of WhatsApp: ``status`` (no network: what ``process`` last saw),
``doctor`` (the gateway asked now) and ``notify test whatsapp NUMBER``."""

from __future__ import annotations

from support.whatsapp import FakeCloudApi, FakeEvolution, FakeZapi
from test_cli_texts import render
from test_whatsapp_flow import buy, evolution_install
from test_whatsapp_gateways import cloud_install, zapi_install

from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops.doctor import doctor
from iptvsync.ops.health import health
from iptvsync.ops.notify import check_whatsapp


def test_status_says_the_instance_is_disconnected_then_healthy_with_the_last_ack(tmp_path, receiver_up):
    with FakeEvolution() as fake:
        fake.connected = False
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        report = health(cfg)
        [problem] = [p for p in report["problems"] if "WhatsApp" in p]
        assert "disconnected" in problem and "no send acknowledged yet" in problem
        assert report["facts"]["whatsapp_pending"] == 1 and report["facts"]["whatsapp_last_ack"] is None
        fake.connected = True
        ledger.conn.execute("UPDATE outbox SET run_after = NULL")
        run_process(cfg)
        report = health(cfg)
        assert report["problems"] == [] and report["facts"]["whatsapp_last_ack"]


def test_status_says_sends_are_failing_when_the_gateway_is_unreachable(tmp_path, receiver_up):
    fake = FakeEvolution().start()
    cfg = evolution_install(tmp_path, fake)
    fake.stop()
    ledger = Ledger(cfg.ledger_path)
    buy(ledger)
    run_process(cfg)
    [problem] = health(cfg)["problems"]
    assert problem.startswith("WhatsApp sends are failing (no send acknowledged yet): evolution 'loja': sendText:"
                              " unreachable")


def test_status_counts_buyers_left_on_email_only(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger, phone="123")
        run_process(cfg)
        assert health(cfg)["facts"]["subs_email_only_no_phone"] == 1


def test_doctor_checks_reachable_credentials_and_session(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        assert [(r["check"], r["status"]) for r in check_whatsapp(cfg)] == [
            ("whatsapp gateway", "ok"), ("whatsapp credentials", "ok"), ("whatsapp session", "ok")]
        fake.connected = False
        rows = check_whatsapp(cfg)
        assert rows[-1]["status"] == "fail" and "state close" in rows[-1]["detail"]
        assert any(r["check"] == "whatsapp session" for r in doctor(cfg))
    with FakeEvolution() as fake2:
        wrong = evolution_install(tmp_path / "w2", fake2, apikey="nope")
        rows = check_whatsapp(wrong)
        assert rows[1] == {"check": "whatsapp credentials", "status": "fail",
                           "detail": "evolution 'loja': 401 apikey refused: check WHATSAPP_TOKEN"}
    assert check_whatsapp(wrong)[0]["status"] == "fail"  # stopped: unreachable


def test_doctor_zapi_and_cloud_api(tmp_path):
    with FakeZapi() as fake:
        fake.connected = False
        rows = check_whatsapp(zapi_install(tmp_path / "z", fake))
        assert rows[-1]["status"] == "fail" and "You are not connected." in rows[-1]["detail"]
    with FakeCloudApi() as fake:
        rows = check_whatsapp(cloud_install(tmp_path / "c", fake))
        assert [r["status"] for r in rows] == ["ok", "ok", "ok"] and "quality GREEN" in rows[-1]["detail"]
        assert rows[-1]["check"] == "whatsapp number"  # no paired phone, no session


def test_notify_test_sends_one_and_shows_each_step(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        got = render("notify", "test", "whatsapp", "11 98765-4321", install=cfg.path)
        assert got.splitlines()[:3] == ["config  ok     gateway evolution", "number  ok     +5511987654321",
                                        "health  ok     state open"]
        assert got.splitlines()[3].startswith("send    ok     acknowledged as 3EB0") and got.endswith("[exit 0]")
        assert fake.sent[0]["to"] == "5511987654321" and "teste" in fake.sent[0]["text"]
        fake.connected = False
        assert render("notify", "test", "whatsapp", "+55 11 98765-4321", install=cfg.path).splitlines()[2:] == [
            "health  FAILED state close", "[exit 1]"]
        assert render("notify", "test", "whatsapp", "12345", install=cfg.path).splitlines()[1:] == [
            "number  FAILED '12345': invalid: …2345", "[exit 1]"]


def test_notify_test_on_cloud_api_sends_metas_sample_template(tmp_path):
    with FakeCloudApi(templates={"hello_world": 0}) as fake:
        cfg = cloud_install(tmp_path, fake)
        assert render("notify", "test", "whatsapp", "+5511987654321", install=cfg.path).endswith("[exit 0]")
        assert fake.sent[0]["template"] == "hello_world" and fake.sent[0]["language"] == "en_US"


def test_verbose_process_and_notify_test_never_log_zapis_url_token(tmp_path):
    import subprocess
    import sys

    with FakeZapi(token="ZapiInstT0ken99", client_token="ZapiCl1entTok77") as fake:
        cfg = zapi_install(tmp_path, fake)
        buy(Ledger(cfg.ledger_path))
        outputs = []
        for args in (["process"], ["notify", "test", "whatsapp", "+5511987654321"]):
            result = subprocess.run([sys.executable, "-m", "iptvsync", "-v", "--config", str(cfg.path), *args],
                                    capture_output=True, text=True, timeout=60)
            outputs.append(result.stdout + result.stderr)
        assert len(fake.sent) == 2
    text = "\n".join(outputs)
    assert "urllib3" in text and "send-text" in text  # the request paths were logged...
    assert "ZapiInstT0ken99" not in text and "ZapiCl1entTok77" not in text  # ...without the tokens
