"""The configuration checks of service/config.py, each with the message an operator sees.

Every refusal must name the setting to fix (and never echo a password); the
last tests take the operator's two paths: `create_app` (gunicorn, the worker)
and the `zpravodaj` command.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from service import create_app
from service.config import SETTINGS, ConfigError, check_required, load_config

GOOD = {
    "SECRET_KEY": "a-long-random-secret",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SMTP_URL": "smtp+starttls://zpravodaj:heslo-k-relayi@mail.example:587",
}


def checked(tmp_path, **environ: str) -> dict:
    """load_config and check_required, as create_app runs them, on GOOD plus `environ`."""
    config = load_config({**GOOD, **environ}, str(tmp_path))
    check_required(config)
    return config


def refusal(tmp_path, **environ: str) -> str:
    with pytest.raises(ConfigError) as error:
        checked(tmp_path, **environ)
    message = str(error.value)
    assert "heslo-k-relayi" not in message  # the SMTP password is never echoed
    return message


def test_good_production_settings_pass(tmp_path):
    config = checked(tmp_path)
    assert config["SMTP_URL"] == GOOD["SMTP_URL"]


# --- required settings ------------------------------------------------------------


@pytest.mark.parametrize("name", ["SECRET_KEY", "REDIS_URL", "SMTP_URL"])
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_each_required_setting_missing_is_named(tmp_path, name, value):
    environ = {key: val for key, val in GOOD.items() if key != name}
    if value is not None:
        environ[name] = value
    config = load_config(environ, str(tmp_path))
    with pytest.raises(ConfigError) as error:
        check_required(config)
    assert str(error.value).startswith(f"Chybí nastavení {name}:")
    assert "zpravodaj dev" in str(error.value)


def test_all_missing_settings_are_named_at_once(tmp_path):
    with pytest.raises(ConfigError, match=r"^Chybí nastavení SECRET_KEY, REDIS_URL, SMTP_URL:"):
        check_required(load_config({}, str(tmp_path)))


# --- numbers and lists --------------------------------------------------------------

INTEGER_SETTINGS = sorted(
    name for name, (parse, _) in SETTINGS.items() if getattr(parse, "__name__", "") == "_int"
)


def test_the_integer_settings_are_all_tested():
    assert "BATCH_SIZE" in INTEGER_SETTINGS and "SMTP_TIMEOUT" in INTEGER_SETTINGS
    assert len(INTEGER_SETTINGS) >= 20


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
@pytest.mark.parametrize("value", ["deset", "1.5", "10 s"])
def test_an_integer_setting_that_is_not_a_whole_number_is_named(tmp_path, name, value):
    message = refusal(tmp_path, **{name: value})
    assert message.startswith(f"{name}={value!r} is not valid")


@pytest.mark.parametrize(
    "name, value",
    [("SEND_RATE", "rychle"), ("MAIL_RETRY_INTERVALS", "10, 60, hodina")],
)
def test_other_numbers_that_do_not_parse_are_named(tmp_path, name, value):
    assert refusal(tmp_path, **{name: value}).startswith(f"{name}={value!r} is not valid")


def test_numbers_and_lists_that_parse_are_taken(tmp_path):
    config = checked(
        tmp_path, BATCH_SIZE=" 200 ", SEND_RATE="2.5", MAIL_RETRY_INTERVALS="5, 30,300"
    )
    assert (config["BATCH_SIZE"], config["SEND_RATE"]) == (200, 2.5)
    assert config["MAIL_RETRY_INTERVALS"] == [5, 30, 300]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_batch_size_below_one_is_refused(tmp_path, value):
    assert refusal(tmp_path, BATCH_SIZE=value) == "BATCH_SIZE must be at least 1."


@pytest.mark.parametrize("value", ["0", "299", "86401", "-3600"])
def test_privacy_link_lifetime_outside_five_minutes_to_a_day_is_refused(tmp_path, value):
    message = refusal(tmp_path, PRIVACY_LINK_MAX_AGE=value)
    assert message.startswith("PRIVACY_LINK_MAX_AGE must be between 300 and 86400 seconds")


def test_privacy_link_lifetime_defaults_to_an_hour(tmp_path):
    assert checked(tmp_path)["PRIVACY_LINK_MAX_AGE"] == 3600
    assert checked(tmp_path, PRIVACY_LINK_MAX_AGE="900")["PRIVACY_LINK_MAX_AGE"] == 900


@pytest.mark.parametrize("value", ["0", "-1", "745"])
def test_admin_session_hours_outside_one_hour_to_31_days_is_refused(tmp_path, value):
    message = refusal(tmp_path, ADMIN_SESSION_HOURS=value)
    assert message == "ADMIN_SESSION_HOURS must be between 1 and 744 (31 days)."


def test_admin_session_hours_sets_the_session_lifetime(tmp_path):
    from datetime import timedelta

    from service import create_app

    assert checked(tmp_path)["ADMIN_SESSION_HOURS"] == 8
    app = create_app({**checked(tmp_path, ADMIN_SESSION_HOURS="2"), "TESTING": True})
    assert app.permanent_session_lifetime == timedelta(hours=2)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_smtp_timeout_below_one_is_refused(tmp_path, value):
    """0 would make every SMTP socket non-blocking: each connection fails at once."""
    assert refusal(tmp_path, SMTP_TIMEOUT=value) == "SMTP_TIMEOUT must be at least 1 second."


@pytest.mark.parametrize(
    "lease, timeout",
    [("30", "30"), ("10", "30"), ("-1", "5")],
    ids=["equal", "shorter", "negative"],
)
def test_batch_lease_not_longer_than_the_smtp_timeout_is_refused(tmp_path, lease, timeout):
    message = refusal(tmp_path, BATCH_LEASE_SECONDS=lease, SMTP_TIMEOUT=timeout)
    assert message == "BATCH_LEASE_SECONDS must be longer than SMTP_TIMEOUT."


@pytest.mark.parametrize("value", ["seznam.cz=fast", "seznam.cz=5,*=dvacet", "pět"])
def test_bad_per_domain_send_rate_is_named_with_an_example(tmp_path, value):
    message = refusal(tmp_path, SEND_RATE_PER_DOMAIN=value)
    assert message == f"SEND_RATE_PER_DOMAIN={value!r}: use e.g. 'seznam.cz=5,*=20'."


def test_good_per_domain_send_rate_passes(tmp_path):
    checked(tmp_path, SEND_RATE_PER_DOMAIN="seznam.cz=5, gmail.com=0.5, *=20")


# --- SMTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "ON", "true"])
def test_smtputf8_other_than_auto_on_off_is_refused(tmp_path, value):
    assert refusal(tmp_path, SMTPUTF8=value) == "SMTPUTF8 must be one of auto, on, off."


@pytest.mark.parametrize(
    "url",
    [
        "smtp+tls://zpravodaj:heslo-k-relayi@mail.example:465",
        "mail.example:25",
        "http://mail.example",
        "smtps//zpravodaj:heslo-k-relayi@mail.example",
    ],
)
def test_smtp_url_with_an_unknown_scheme_is_named(tmp_path, url):
    message = refusal(tmp_path, SMTP_URL=url)
    assert message.startswith("SMTP_URL: ")
    assert "smtp://, smtp+starttls:// or smtps://" in message


@pytest.mark.parametrize(
    "url", ["localhost:6379", "127.0.0.1:6379", "http://127.0.0.1:6379", "redis+unix:///x"]
)
def test_redis_url_with_an_unknown_scheme_is_named(tmp_path, url):
    message = refusal(tmp_path, REDIS_URL=url)
    assert message.startswith("REDIS_URL: start it with redis://, rediss:// or unix://")
    assert "\n" not in message


def test_redis_url_with_a_bad_port_is_named(tmp_path):
    message = refusal(tmp_path, REDIS_URL="redis://:tajne-heslo@127.0.0.1:99999/0")
    assert message == "REDIS_URL: the port must be a number up to 65535."


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:heslo@redis.example:6380/1", "unix:///run/r.sock"],
)
def test_redis_urls_of_the_documented_forms_pass_and_reach_the_rate_limiter(tmp_path, url):
    app = create_app({**GOOD, "REDIS_URL": url, "DATABASE_URL": f"sqlite:///{tmp_path}/db"})
    expected = "redis+" + url if url.startswith("unix:") else url
    assert app.config["RATELIMIT_STORAGE_URI"] == expected


@pytest.mark.parametrize(
    "url",
    ["smtp://mail.example:dvacetpět", "smtps://zpravodaj:heslo-k-relayi@mail.example:99999"],
)
def test_smtp_url_with_a_bad_port_is_named(tmp_path, url):
    message = refusal(tmp_path, SMTP_URL=url)
    assert message.startswith("SMTP_URL: the port")


@pytest.mark.parametrize(
    "url",
    [
        "smtp://127.0.0.1:1025",
        "smtp+starttls://user:p%40ss@mail.example:587",
        "smtps://mail.example",
        "SMTP://mail.example",
    ],
)
def test_smtp_urls_of_the_documented_forms_pass(tmp_path, url):
    checked(tmp_path, SMTP_URL=url)


# --- DKIM ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "zpravodaj.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_complete_dkim_settings_pass(tmp_path, dkim_key):
    checked(
        tmp_path, DKIM_DOMAIN="socialnibydleni.example", DKIM_SELECTOR="zpravodaj2026",
        DKIM_PRIVATE_KEY_PATH=dkim_key,
    )  # fmt: skip


@pytest.mark.parametrize(
    "given, missing",
    [
        (("DKIM_DOMAIN",), "DKIM_SELECTOR, DKIM_PRIVATE_KEY_PATH"),
        (("DKIM_SELECTOR", "DKIM_PRIVATE_KEY_PATH"), "DKIM_DOMAIN"),
        (("DKIM_DOMAIN", "DKIM_SELECTOR"), "DKIM_PRIVATE_KEY_PATH"),
    ],
)
def test_half_configured_dkim_names_what_is_missing(tmp_path, dkim_key, given, missing):
    values = {
        "DKIM_DOMAIN": "socialnibydleni.example",
        "DKIM_SELECTOR": "zpravodaj2026",
        "DKIM_PRIVATE_KEY_PATH": dkim_key,
    }
    message = refusal(tmp_path, **{name: values[name] for name in given})
    assert message.startswith(f"DKIM is half configured: set {missing} too, or unset ")


@pytest.mark.parametrize("selector", ["zpravodaj_2026", "-zpravodaj", "sel ector", "výběr"])
def test_bad_dkim_selector_is_named(tmp_path, dkim_key, selector):
    message = refusal(
        tmp_path, DKIM_DOMAIN="socialnibydleni.example", DKIM_SELECTOR=selector,
        DKIM_PRIVATE_KEY_PATH=dkim_key,
    )  # fmt: skip
    assert message == f"DKIM_SELECTOR={selector!r}: use letters, digits and hyphens."


def test_bad_dkim_domain_is_named(tmp_path, dkim_key):
    message = refusal(
        tmp_path, DKIM_DOMAIN="localhost", DKIM_SELECTOR="zpravodaj2026",
        DKIM_PRIVATE_KEY_PATH=dkim_key,
    )  # fmt: skip
    assert "'localhost' is not a valid domain name" in message
    assert message.endswith("Check DKIM_DOMAIN and DKIM_PRIVATE_KEY_PATH.")


@pytest.mark.parametrize("kind", ["missing", "not-a-key"])
def test_unusable_dkim_key_is_named(tmp_path, kind):
    path = tmp_path / "dkim.pem"
    if kind == "not-a-key":
        path.write_text("-----BEGIN PRIVATE KEY-----\nnic\n-----END PRIVATE KEY-----\n")
    message = refusal(
        tmp_path, DKIM_DOMAIN="socialnibydleni.example", DKIM_SELECTOR="zpravodaj2026",
        DKIM_PRIVATE_KEY_PATH=str(path),
    )  # fmt: skip
    assert message.endswith("Check DKIM_DOMAIN and DKIM_PRIVATE_KEY_PATH.")
    if kind == "missing":
        assert f"cannot read DKIM key {path}" in message


# --- the operator's two paths -------------------------------------------------------


def test_create_app_refuses_a_bad_setting_from_the_environment(monkeypatch, tmp_path):
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("BATCH_SIZE", "hodně")
    with pytest.raises(ConfigError, match=r"^BATCH_SIZE='hodně' is not valid"):
        create_app()


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("SMTP_URL", "smtp+tls://zpravodaj:heslo-k-relayi@mail.example", "SMTP_URL: "),
        ("BATCH_LEASE_SECONDS", "5", "BATCH_LEASE_SECONDS must be longer than SMTP_TIMEOUT."),
        ("RECONCILE_INTERVAL", "půl minuty", "RECONCILE_INTERVAL='půl minuty' is not valid"),
        # The commands' app connects to Redis only when it needs it: refused up front all
        # the same (it ran `lists show` and took in bounces with this before).
        ("REDIS_URL", "localhost:6379", "REDIS_URL: start it with redis://"),
    ],
)
def test_the_command_line_says_which_setting_is_wrong(tmp_path, name, value, expected):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "INSTANCE_PATH": str(tmp_path),
        **GOOD,
        name: value,
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "lists", "show"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"Error: {expected}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "heslo-k-relayi" not in result.stderr


def test_old_soft_bounce_setting_names_still_work_and_the_new_ones_win(tmp_path, caplog):
    old = load_config({**GOOD, "BOUNCE_SOFT_THRESHOLD": "8", "BOUNCE_SOFT_WINDOW_DAYS": "10"}, "")
    assert (old["BOUNCE_SOFT_LIMIT"], old["BOUNCE_SOFT_DAYS"]) == (8, 10)
    assert "BOUNCE_SOFT_THRESHOLD is deprecated" in caplog.text
    both = load_config({**GOOD, "BOUNCE_SOFT_THRESHOLD": "8", "BOUNCE_SOFT_LIMIT": "3"}, "")
    assert both["BOUNCE_SOFT_LIMIT"] == 3
    default = load_config(GOOD, str(tmp_path))
    assert (default["BOUNCE_SOFT_LIMIT"], default["BOUNCE_SOFT_DAYS"]) == (5, 7)
    assert default["BOUNCE_RAW_DAYS"] == 30
