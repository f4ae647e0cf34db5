"""The app factory, configuration, health check and error pages."""

from __future__ import annotations

import pytest
from redis import Redis

from service import create_app
from service.config import ConfigError, load_config
from service.czech import group_genitive
from service.dev.processes import free_port


def test_production_refuses_to_start_without_secrets_and_services(monkeypatch, tmp_path):
    for name in ("SECRET_KEY", "REDIS_URL", "SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError) as error:
        create_app()
    assert "SECRET_KEY, REDIS_URL, SMTP_URL" in str(error.value)


def test_configuration_comes_from_the_environment(tmp_path):
    config = load_config(
        {
            "RATE_LIMITS": "off",
            "EMBED_ORIGINS": "https://a.example, https://b.example",
            "SECRET_KEY_FALLBACKS": "old1,old2",
            "CONFIRM_TOKEN_MAX_AGE_DAYS": "3",
        },
        str(tmp_path),
    )
    assert config["RATE_LIMITS"] is False
    assert config["EMBED_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert config["SECRET_KEY_FALLBACKS"] == ["old1", "old2"]
    assert config["CONFIRM_TOKEN_MAX_AGE_DAYS"] == 3
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path}/zpravodaj.sqlite3"
    with pytest.raises(ConfigError):
        load_config({"CONFIRM_TOKEN_MAX_AGE_DAYS": "týden"}, str(tmp_path))


def test_postgres_urls_use_psycopg_3(app_config):
    app_config["DATABASE_URL"] = "postgresql://user@db.example/zpravodaj"
    app = create_app(app_config)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://user@db.example/zpravodaj"


def test_cli_explains_missing_configuration(monkeypatch, tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "INSTANCE_PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "service", "lists", "show"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Chybí nastavení SECRET_KEY, REDIS_URL, SMTP_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_names_what_is_down(client, app, monkeypatch):
    # Undone before the app fixture's teardown flushes Redis: the autouse
    # worker_stop_state_per_test took `monkeypatch` before `app`, so its own undo
    # would come only after that teardown.
    with monkeypatch.context() as patch:
        patch.setitem(app.extensions, "redis", Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"))
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"].startswith("down")


def test_unknown_page_is_a_czech_404(client):
    response = client.get("/nic-tu-neni")
    assert response.status_code == 404
    assert "Stránka nebyla nalezena." in response.get_data(as_text=True)


def test_wrong_method_is_a_czech_405(client):
    response = client.put("/subscribe")
    assert response.status_code == 405
    assert "nepřijímá" in response.get_data(as_text=True)


def test_security_headers(client):
    response = client.get("/subscribe")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in response.headers


def test_token_pages_do_not_leak_the_token(client):
    response = client.get("/unsubscribe/whatever")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_dev_outbox_exists_only_in_dev(client):
    assert client.get("/dev/outbox/").status_code == 404


def test_privacy_notice_is_linked_from_the_form(client):
    form = client.get("/subscribe").get_data(as_text=True)
    assert 'href="/privacy"' in form
    notice = client.get("/privacy")
    assert notice.status_code == 200
    assert "Zásady zpracování osobních údajů" in notice.get_data(as_text=True)
    assert "30 dní po odeslání" in notice.get_data(as_text=True)


def test_root_leads_to_the_form(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/subscribe")


def test_an_admin_session_survives_a_secret_key_rotation(app, client, accounts):
    """README, Key rotation: with the old key in SECRET_KEY_FALLBACKS, sessions stay."""
    from tests.conftest import log_in

    log_in(client, "redakce@socialnibydleni.example")
    cookie = client.get_cookie("session").value
    old = app.config["SECRET_KEY"]

    def admin_page_with_the_old_cookie() -> int:
        browser = app.test_client()
        browser.set_cookie("session", cookie)
        return browser.get("/admin/").status_code

    app.config.update(SECRET_KEY="nový-klíč-po-rotaci", SECRET_KEY_FALLBACKS=[old])
    assert admin_page_with_the_old_cookie() == 200
    app.config.update(SECRET_KEY_FALLBACKS=[])  # without the old key: signed out
    assert admin_page_with_the_old_cookie() == 302


@pytest.mark.parametrize(
    ("name", "genitive"),
    [
        ("Pracovní skupina Brno", "Pracovní skupiny Brno"),
        ("Expertní pracovní skupina Chomutov", "Expertní pracovní skupiny Chomutov"),
        ("Odborná skupina Praha 14", "Odborné skupiny Praha 14"),
        ("Krizové bydlení", "pracovní skupiny Krizové bydlení"),
        ("Working group Brno", "Working group Brno"),
    ],
)
def test_a_group_name_in_a_sentence_never_says_group_twice(name, genitive):
    """Not "do pracovní skupiny Pracovní skupina Brno" (issue 16)."""
    assert group_genitive(name) == genitive
