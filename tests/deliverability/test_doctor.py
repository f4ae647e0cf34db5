"""`zpravodaj doctor`: each check on its own, and the command, with no network and no mail sent.

SMTP checks talk to the aiosmtpd sink of tests/conftest.py (or to a port
nobody listens on); DNS is a dictionary passed in as the resolver.
"""

from __future__ import annotations

import pytest
from flask_babel import force_locale

from service.deliverability import doctor
from service.deliverability.dkim import generate_private_key, record_value
from service.deliverability.doctor import (
    FAIL,
    OK,
    SKIP,
    WARN,
    DnsUnavailable,
    Result,
    check_alignment,
    check_base_url,
    check_dkim_dns,
    check_dkim_key,
    check_dmarc,
    check_embed_origins,
    check_secrets,
    check_smtp,
    check_spf,
    dns_resolver,
)
from service.dev.processes import free_port
from tests.deliverability.keys import DOMAIN, SELECTOR, dkim_settings, session_key

STRONG = "8fJ2kL9qXw3Zr7Tt1Vb6Nm4Pc5Ys0Hd2Ge8Ua"
STRONG_2 = "Qm3Rt8Wz1Xc6Vb9Nk2Lj5Hg7Fd4Sa0Pp1Oo3"
MAIL_FROM = f"Zpravodaj sociálního bydlení <zpravodaj@{DOMAIN}>"
GOOD_DNS = {
    DOMAIN: ["google-site-verification=abc", "v=spf1 mx include:_spf.relay.example -all"],
    f"_dmarc.{DOMAIN}": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@socialnibydleni.example"],
    f"{SELECTOR}._domainkey.{DOMAIN}": [record_value(session_key())],
}


@pytest.fixture(autouse=True)
def in_english(request, monkeypatch):
    """The checks' wording is asserted in English here, as `ZPRAVODAJ_LANGUAGE=en zpravodaj
    doctor` prints it (without an app and inside one); the Czech is checked at the end."""
    monkeypatch.setenv("ZPRAVODAJ_LANGUAGE", "en")
    if "app" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("app")
    with force_locale("en"):
        yield


def resolver(records: dict[str, list[str]]) -> doctor.Resolver:
    """An offline DNS: the given TXT records, nothing else."""
    return lambda name: list(records.get(name.rstrip("."), []))


def no_dns(name: str) -> list[str]:
    raise DnsUnavailable("offline")


def by_name(results: list[Result]) -> dict[str, Result]:
    return {result.name: result for result in results}


def good_config(**overrides) -> dict:
    config = {
        "BASE_URL": "https://zpravodaj.socialnibydleni.example",
        "SECRET_KEY": STRONG,
        "SUPPRESSION_KEY": STRONG_2,
        "MAIL_FROM": MAIL_FROM,
        "BOUNCE_ADDRESS": "",
        "SMTP_TIMEOUT": 5,
        "ATTACHMENT_MAX_BYTES": 10 * 1024 * 1024,
        **dkim_settings(),
    }
    config.update(overrides)
    return config


# --- SMTP -------------------------------------------------------------------------------


def test_smtp_check_against_the_sink_lists_extensions_and_sends_nothing(outbox):
    results = by_name(check_smtp(good_config(SMTP_URL=outbox.url)))
    assert results["smtp"].status == OK
    assert f"127.0.0.1:{outbox.port}" in results["smtp"].detail
    assert "SMTPUTF8" in results["smtp"].detail
    assert results["smtp-smtputf8"].status == OK
    assert results["smtp-tls"].status == OK  # plain SMTP, but to this machine
    assert outbox.mails == []


def test_smtp_check_on_a_closed_port_fails_with_the_reason():
    port = free_port()
    [result] = check_smtp(good_config(SMTP_URL=f"smtp://127.0.0.1:{port}"))
    assert result.status == FAIL
    assert result.name == "smtp"
    assert f"connect to 127.0.0.1:{port} failed" in result.detail


def test_smtp_check_refuses_a_bad_url():
    [result] = check_smtp(good_config(SMTP_URL="http://mail.example"))
    assert (result.status, result.name) == (FAIL, "smtp")
    assert "scheme" in result.detail


def test_starttls_to_a_server_without_it_fails(outbox):
    url = outbox.url.replace("smtp://", "smtp+starttls://")
    results = by_name(check_smtp(good_config(SMTP_URL=url)))
    assert results["smtp"].status == FAIL
    assert "STARTTLS" in results["smtp"].detail
    assert outbox.mails == []


# --- DKIM --------------------------------------------------------------------------------


def test_dkim_key_loads_and_signs():
    [result] = check_dkim_key(good_config())
    assert result.status == OK
    assert "2048-bit RSA key" in result.detail


def test_dkim_off_is_a_warning():
    config = good_config(DKIM_DOMAIN=None, DKIM_SELECTOR=None, DKIM_PRIVATE_KEY_PATH=None)
    [result] = check_dkim_key(config)
    assert result.status == WARN
    assert "zpravodaj dkim keygen" in result.detail
    assert check_dkim_dns(config, resolver(GOOD_DNS))[0].status == SKIP


def test_dkim_key_file_gone_fails(tmp_path):
    [result] = check_dkim_key(good_config(DKIM_PRIVATE_KEY_PATH=str(tmp_path / "gone.pem")))
    assert result.status == FAIL
    assert "gone.pem" in result.detail


def test_dkim_record_matching_the_key():
    [result] = check_dkim_dns(good_config(), resolver(GOOD_DNS))
    assert result.status == OK


def test_dkim_record_of_another_key_fails():
    other = {**GOOD_DNS, f"{SELECTOR}._domainkey.{DOMAIN}": [record_value(generate_private_key())]}
    [result] = check_dkim_dns(good_config(), resolver(other))
    assert result.status == FAIL
    assert "not the public half" in result.detail
    assert f'{SELECTOR}._domainkey.{DOMAIN}. IN TXT "v=DKIM1; k=rsa; p=' in result.detail


def test_dkim_record_missing_fails_and_says_what_to_publish():
    [result] = check_dkim_dns(good_config(), resolver({}))
    assert result.status == FAIL
    assert f'publish: {SELECTOR}._domainkey.{DOMAIN}. IN TXT "v=DKIM1' in result.detail


def test_dkim_record_split_into_strings_is_joined():
    value = record_value(session_key())
    split = {f"{SELECTOR}._domainkey.{DOMAIN}": [value[:100] + " " + value[100:]]}
    assert check_dkim_dns(good_config(), resolver(split))[0].status == OK


# --- alignment --------------------------------------------------------------------------------


def test_aligned_setup():
    results = by_name(check_alignment(good_config()))
    assert results["dkim-alignment"].status == OK
    assert results["spf-alignment"].status == OK
    assert f"bounces@{DOMAIN}" in results["spf-alignment"].detail


def test_dkim_on_a_parent_domain_aligns():
    config = good_config(MAIL_FROM="zpravodaj@news.socialnibydleni.example")
    assert by_name(check_alignment(config))["dkim-alignment"].status == OK


def test_dkim_on_another_domain_fails():
    config = good_config(DKIM_DOMAIN="mailer.example")
    results = by_name(check_alignment(config))
    assert results["dkim-alignment"].status == FAIL
    assert "does not align" in results["dkim-alignment"].detail


def test_bounce_address_elsewhere_warns_while_dkim_carries_dmarc():
    config = good_config(BOUNCE_ADDRESS="bounces@relay.example")
    assert by_name(check_alignment(config))["spf-alignment"].status == WARN
    without_dkim = {**config, "DKIM_DOMAIN": None}
    assert by_name(check_alignment(without_dkim))["spf-alignment"].status == FAIL


# --- BASE_URL and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://zpravodaj.socialnibydleni.cz", OK),
        ("http://zpravodaj.socialnibydleni.cz", FAIL),
        ("http://127.0.0.1:5000", WARN),
        ("http://localhost:5000", WARN),
        ("zpravodaj.socialnibydleni.cz", FAIL),
    ],
)
def test_base_url(url, status):
    [result] = check_base_url({"BASE_URL": url})
    assert result.status == status, result.detail


def test_weak_or_missing_secrets():
    results = by_name(check_secrets({"SECRET_KEY": "test-secret-key", "SUPPRESSION_KEY": None}))
    assert results["secret-key"].status == FAIL
    assert "characters" in results["secret-key"].detail
    assert results["suppression-key"].status == WARN
    results = by_name(check_secrets({"SECRET_KEY": STRONG, "SUPPRESSION_KEY": STRONG}))
    assert results["secret-key"].status == OK
    assert results["suppression-key"].status == WARN  # the same value as SECRET_KEY
    assert by_name(check_secrets({"SECRET_KEY": "changeme"}))["secret-key"].status == FAIL
    assert all(r.status == OK for r in check_secrets(good_config()))


# --- SPF and DMARC ---------------------------------------------------------------------------


def test_spf_and_dmarc_present():
    assert check_spf(good_config(), resolver(GOOD_DNS))[0].status == OK
    [dmarc] = check_dmarc(good_config(), resolver(GOOD_DNS))
    assert dmarc.status == OK
    assert "quarantine" in dmarc.detail


def test_spf_and_dmarc_missing_fail():
    [spf] = check_spf(good_config(), resolver({}))
    assert spf.status == FAIL
    assert f"no SPF record at {DOMAIN}" in spf.detail
    [dmarc] = check_dmarc(good_config(), resolver({}))
    assert dmarc.status == FAIL
    assert "v=DMARC1; p=none" in dmarc.detail


def test_spf_is_looked_up_on_the_bounce_domain():
    config = good_config(BOUNCE_ADDRESS="bounces@bounce.socialnibydleni.example")
    records = {"bounce.socialnibydleni.example": ["v=spf1 ip4:192.0.2.1 -all"]}
    [spf] = check_spf(config, resolver(records))
    assert spf.status == OK
    assert "bounce.socialnibydleni.example" in spf.detail


def test_spf_pitfalls():
    two = {DOMAIN: ["v=spf1 -all", "v=spf1 mx -all"]}
    assert check_spf(good_config(), resolver(two))[0].status == FAIL
    open_relay = {DOMAIN: ["v=spf1 +all"]}
    assert check_spf(good_config(), resolver(open_relay))[0].status == FAIL


def test_dmarc_of_the_parent_domain_counts():
    config = good_config(MAIL_FROM=f"zpravodaj@news.{DOMAIN}")
    [dmarc] = check_dmarc(config, resolver(GOOD_DNS))
    assert dmarc.status == OK


def test_without_dns_every_dns_check_is_skipped_with_a_note():
    config = good_config()
    results = check_dkim_dns(config, no_dns) + check_spf(config, no_dns)
    results += check_dmarc(config, no_dns)
    assert [r.status for r in results] == [SKIP, SKIP, SKIP]
    assert all("DNS not reachable" in r.detail and "dig TXT" in r.detail for r in results)


def test_dnspython_resolver_without_a_server_is_unavailable_not_missing():
    resolve = dns_resolver(0.3, nameservers=["127.0.0.1"], port=free_port())
    with pytest.raises(DnsUnavailable):
        resolve(DOMAIN)
    with pytest.raises(DnsUnavailable):  # and it does not wait again
        resolve(f"_dmarc.{DOMAIN}")
    assert check_spf(good_config(), resolve)[0].status == SKIP


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """Point the command's DNS at a dictionary."""

    def use(records):
        monkeypatch.setattr(doctor, "dns_resolver", lambda *args, **kwargs: resolver(records))

    return use


def test_doctor_command_all_good(app, runner, outbox, offline):
    app.config.update(good_config(SMTP_URL=outbox.url))
    offline(GOOD_DNS)
    result = runner.invoke(args=["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    statuses = {line.split()[1]: line.split()[0] for line in lines[:-1]}
    assert statuses["database"] == statuses["redis"] == statuses["smtp"] == "ok"
    for name in ("dkim-key", "dkim-alignment", "dkim-dns", "spf", "dmarc", "base-url"):
        assert statuses[name] == "ok", result.output
    assert "0 fail" in lines[-1]
    assert outbox.mails == []


def test_doctor_command_fails_on_a_closed_smtp_port_without_a_traceback(app, runner, offline):
    app.config.update(good_config(SMTP_URL=f"smtp://127.0.0.1:{free_port()}"))
    offline(GOOD_DNS)
    result = runner.invoke(args=["doctor"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert any(line.startswith("fail") and " smtp " in line for line in result.output.splitlines())
    assert "redis" in result.output and "dkim-dns" in result.output  # the rest still ran


def test_doctor_command_reports_http_base_url_and_skipped_dns(app, runner, outbox, monkeypatch):
    app.config.update(good_config(SMTP_URL=outbox.url, BASE_URL="http://zpravodaj.example.cz"))
    monkeypatch.setattr(doctor, "dns_resolver", lambda *args, **kwargs: no_dns)
    result = runner.invoke(args=["doctor"])
    assert result.exit_code == 1
    lines = {line.split()[1]: line for line in result.output.splitlines()[:-1]}
    assert lines["base-url"].startswith("fail")
    assert "not https" in lines["base-url"]
    for name in ("dkim-dns", "spf", "dmarc"):
        assert lines[name].startswith("skip")


def test_dkim_key_readable_by_others_is_a_warning(tmp_path):
    from service.deliverability.dkim import private_key_pem

    path = tmp_path / "open.pem"
    path.write_bytes(private_key_pem(session_key()))
    path.chmod(0o644)
    [result] = check_dkim_key(good_config(DKIM_PRIVATE_KEY_PATH=str(path)))
    assert result.status == WARN
    assert "chmod 600" in result.detail


def test_login_where_the_server_offers_none_fails_as_a_login_problem(outbox):
    url = outbox.url.replace("smtp://", "smtp://user:secret@")
    results = by_name(check_smtp(good_config(SMTP_URL=url)))
    assert results["smtp"].status == OK
    assert results["smtp-login"].status == FAIL
    assert outbox.mails == []


@pytest.mark.parametrize(
    ("origins", "status"),
    [
        ([], WARN),
        (["https://www.socialnibydleni.cz"], OK),
        (["https://www.socialnibydleni.cz/"], WARN),
        (["www.socialnibydleni.cz"], WARN),
    ],
)
def test_embed_origins(origins, status):
    [result] = check_embed_origins({"EMBED_ORIGINS": origins})
    assert (result.name, result.status) == ("embed-origins", status)
    if not origins:
        assert "EMBED_ORIGINS=https://" in result.detail  # says how to set it
