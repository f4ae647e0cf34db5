"""The command line in Czech and English: the language from the environment, the messages,
the help (also before any app exists), and outputs for scripts that stay as they are.

The commands are run through the real `zpravodaj` group (service/cli.py) with click's
CliRunner, on the test's app; the environment the runner gets decides the language.
"""

from __future__ import annotations

import subprocess

import click
import pytest
from click.testing import CliRunner
from flask import has_app_context
from flask.cli import ScriptInfo
from flask_babel import get_locale

from service.cli import cli
from service.cli_language import cli_language, language_of_locale
from tests.conftest import add_confirmed_subscribers
from tests.test_cli import ZPRAVODAJ

GOOD = "dlouhe-heslo-123"
# What decides the language, and nothing else: the runner puts these in os.environ.
NO_LANGUAGE = {"ZPRAVODAJ_LANGUAGE": None, "LC_ALL": None, "LC_MESSAGES": None, "LANG": None}


@pytest.fixture
def zpravodaj(app, monkeypatch):
    """`zpravodaj ARGS…` on the test's app, in the environment `language` names."""
    # Flask's group marks the process as run from its CLI; undone after the test.
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)

    def run(*args: str, input: str | None = None, **environ: str | None) -> click.testing.Result:
        return CliRunner().invoke(
            cli(),
            list(args),
            input=input,
            env={**NO_LANGUAGE, **environ},
            obj=ScriptInfo(create_app=lambda: app),
            catch_exceptions=False,
        )

    return run


# --- which language ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "cs"),
        ({"ZPRAVODAJ_LANGUAGE": "en"}, "en"),
        ({"ZPRAVODAJ_LANGUAGE": "EN"}, "en"),
        ({"ZPRAVODAJ_LANGUAGE": "cs", "LANG": "en_US.UTF-8"}, "cs"),
        ({"ZPRAVODAJ_LANGUAGE": "en", "LC_ALL": "cs_CZ.UTF-8"}, "en"),
        ({"ZPRAVODAJ_LANGUAGE": "de"}, "cs"),  # set, but no language of ours: Czech
        ({"ZPRAVODAJ_LANGUAGE": " ", "LANG": "en_GB.UTF-8"}, "en"),  # empty counts as unset
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({"LANG": "cs_CZ.UTF-8"}, "cs"),
        ({"LANG": "C.UTF-8"}, "cs"),
        ({"LANG": "de_DE.UTF-8"}, "cs"),
        ({"LANG": "cs_CZ.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "en"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "cs_CZ"}, "cs"),
        ({"LC_MESSAGES": "en_US.UTF-8", "LC_ALL": "C"}, "cs"),  # LC_ALL wins, even as C
        ({"LC_ALL": "en_US@euro", "LANG": "cs_CZ"}, "en"),
    ],
)
def test_the_language_comes_from_the_environment(environ, expected):
    assert cli_language(environ) == expected


@pytest.mark.parametrize(
    ("name", "language"),
    [("en", "en"), ("cs_CZ.UTF-8", "cs"), ("en-GB", "en"), ("english", None), ("C", None)],
)
def test_locale_names_are_read_as_posix_writes_them(name, language):
    assert language_of_locale(name) == language


# --- messages ----------------------------------------------------------------------


def test_a_command_speaks_czech_by_default_and_english_when_asked(zpravodaj):
    czech = zpravodaj("lists", "create", "novinky-cz", "--name", "Novinky")
    assert czech.exit_code == 0, czech.output
    assert czech.output == "Zpravodaj novinky-cz vytvořen.\n"
    english = zpravodaj("lists", "create", "news-en", "--name", "News", ZPRAVODAJ_LANGUAGE="en")
    assert english.exit_code == 0, english.output
    assert english.output == "Newsletter news-en created.\n"
    by_locale = zpravodaj("lists", "create", "news-gb", "--name", "News", LANG="en_GB.UTF-8")
    assert by_locale.output == "Newsletter news-gb created.\n"


def test_errors_are_in_the_clis_language(zpravodaj):
    czech = zpravodaj("lists", "update", "neni-tu", "--theme", "x")
    assert czech.exit_code == 1
    assert "Error: Seznam 'neni-tu' neexistuje." in czech.output
    english = zpravodaj("lists", "update", "neni-tu", "--theme", "x", ZPRAVODAJ_LANGUAGE="en")
    assert english.exit_code == 1
    assert "Error: There is no list 'neni-tu'." in english.output
    # A message of the code the CLI shares with the web (accounts.py) follows it too.
    refused = zpravodaj(
        "users", "create", "bez-zavinace", "--role", "editor",
        input=f"{GOOD}\n{GOOD}\n", ZPRAVODAJ_LANGUAGE="en",
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "Invalid e-mail address." in refused.output
    assert "Neplatný" not in refused.output


def test_an_imports_findings_are_in_the_clis_language(zpravodaj, tmp_path):
    """The importer's skipped lines and refusals are stored messages (Czech in the
    database): the CLI shows them in its own language, not Czech inside English."""
    people = tmp_path / "people.csv"
    people.write_text("email,name\nnot-an-address,X\nanna@example.cz,Anna\n", encoding="utf-8")
    english = zpravodaj(
        "subscribers", "import", str(people), "--list", "zpravodaj",
        "--consent-source", "paper forms 2026", ZPRAVODAJ_LANGUAGE="en",
    )  # fmt: skip
    assert english.exit_code == 0, english.output
    assert "line 2: invalid address 'not-an-address'" in english.output
    assert "neplatná" not in english.output
    czech = zpravodaj(
        "subscribers", "import", str(people), "--list", "zpravodaj",
        "--consent-source", "papírové formuláře 2026",
    )  # fmt: skip
    assert "řádek 2: neplatná adresa 'not-an-address'" in czech.output
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    refused = zpravodaj(
        "subscribers", "import", str(empty), "--list", "zpravodaj",
        "--consent-source", "x", ZPRAVODAJ_LANGUAGE="en",
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "The file is empty." in refused.output and "prázdný" not in refused.output


def test_lists_show_labels_a_groups_details_in_either_language(zpravodaj):
    details = ["--municipality", "Ostrava", "--meeting-rhythm", "každý druhý čtvrtek v měsíci"]
    updated = zpravodaj("lists", "update", "ostrava-psb", *details, ZPRAVODAJ_LANGUAGE="en")
    assert updated.output == "Working group ostrava-psb updated.\n"
    czech = zpravodaj("lists", "show", "ostrava-psb").output.splitlines()
    english = zpravodaj("lists", "show", "ostrava-psb", ZPRAVODAJ_LANGUAGE="en").output
    # The tab-separated first line is the same for scripts; the labels below are translated.
    first_line = "ostrava-psb\tgroup\tPracovní skupina sociálního bydlení"
    assert czech[0] == english.splitlines()[0] == first_line
    assert "  jazyk: cs" in czech and "  obec: Ostrava" in czech
    assert "  language: cs" in english and "  municipality: Ostrava" in english
    assert "  meeting rhythm: každý druhý čtvrtek v měsíci" in english


def test_consent_verify_counts_with_czech_plural_forms(zpravodaj, client, app, outbox):
    from tests.security.test_consent_ledger import sign_up_and_confirm

    sign_up_and_confirm(client, app, outbox, "jana@seznam.cz")  # a sign-up, a confirmation
    czech = zpravodaj("consent", "verify")
    assert czech.exit_code == 0, czech.output
    assert czech.output == "Záznamy o souhlasu jsou neporušené: zkontrolovány 2 události.\n"
    english = zpravodaj("consent", "verify", ZPRAVODAJ_LANGUAGE="en")
    assert english.output == "The consent records are intact: 2 events checked.\n"


def test_the_doctor_speaks_the_clis_language(zpravodaj, app):
    app.config["BASE_URL"] = "http://zpravodaj.test"
    app.config["SMTP_URL"] = "smtp://127.0.0.1:1"  # nobody listens: fails, quickly
    czech = zpravodaj("doctor").output
    english = zpravodaj("doctor", ZPRAVODAJ_LANGUAGE="en").output
    assert "není https: odkazy a odhlášení jedním kliknutím" in czech
    assert "is not https: links and one-click unsubscribe" in english
    assert "připojení k 127.0.0.1:1 selhalo" in czech
    assert "connect to 127.0.0.1:1 failed" in english
    # Status and check names are the same words in both, for grep and scripts.
    statuses = [line.split()[:2] for line in czech.splitlines()[:-1]]
    assert statuses == [line.split()[:2] for line in english.splitlines()[:-1]]


def test_the_app_context_speaks_czech_again_after_an_english_command(zpravodaj, app):
    assert zpravodaj("lists", "show", ZPRAVODAJ_LANGUAGE="en").exit_code == 0
    assert str(get_locale()) == "cs"
    # Help ends the run while the commands are listed, before click closes its context.
    assert zpravodaj("--help", ZPRAVODAJ_LANGUAGE="en").exit_code == 0
    assert str(get_locale()) == "cs"


# --- help ----------------------------------------------------------------------------


def test_help_texts_are_translated(zpravodaj):
    czech = zpravodaj("lists", "create", "--help").output
    english = zpravodaj("lists", "create", "--help", ZPRAVODAJ_LANGUAGE="en").output
    assert "Vytvoří seznam SLUG (malá písmena, číslice a spojovníky)." in czech
    assert "Název, který uvidí odběratelé." in czech
    assert "Skupina: jak často se schází." in czech
    assert "Create a list SLUG (lower-case letters, digits and hyphens)." in english
    assert "Name shown to subscribers." in english
    assert "Group: how often it meets." in english
    listed = zpravodaj("--help", ZPRAVODAJ_LANGUAGE="en").output
    assert "Mailing lists and working groups." in listed
    assert "The consent ledger." in listed
    assert "Seznamy a pracovní skupiny." in zpravodaj("--help").output


def bare(tmp_path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    """`zpravodaj ARGS…` as an operator runs it before any setting exists (no app at all)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path)}
    return subprocess.run(
        [str(ZPRAVODAJ), *args], cwd=tmp_path, env={**env, **environ},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_help_without_settings_follows_the_locale(tmp_path):
    english = bare(tmp_path, "lists", "create", "--help", LANG="en_US.UTF-8")
    assert english.returncode == 0, english.stderr
    assert "Name shown to subscribers." in english.stdout
    czech = bare(tmp_path, "lists", "create", "--help", LANG="C.UTF-8")
    assert "Název, který uvidí odběratelé." in czech.stdout
    worker = bare(tmp_path, "worker", "--help", ZPRAVODAJ_LANGUAGE="en")
    assert "Work until the queues are empty, then exit." in worker.stdout


def test_commands_without_an_app_speak_english_too(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    assert not has_app_context()
    result = CliRunner().invoke(
        cli(),
        ["dkim", "keygen", "--selector", "s1", "--domain", "obec.example", "--out",
         str(tmp_path / "k.pem")],
        env={**NO_LANGUAGE, "LANG": "en_US.UTF-8"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Wrote a 2048-bit RSA private key to {tmp_path / 'k.pem'} (mode 0600)." in result.output
    assert "3. Restart the web and worker processes and run `zpravodaj doctor`." in result.output
    again = CliRunner().invoke(
        cli(),
        ["dkim", "keygen", "--selector", "s1", "--domain", "obec.example", "--out",
         str(tmp_path / "k.pem")],
        env=NO_LANGUAGE,
    )  # fmt: skip
    assert again.exit_code == 1
    assert "už existuje; klíč nepřepíšu (zvolte jiné --out)" in again.output


# --- outputs for scripts -------------------------------------------------------------


def test_outputs_for_scripts_are_the_same_in_both_languages(zpravodaj, accounts):
    add_confirmed_subscribers("zpravodaj", 3)
    for args in (
        ["subscribers", "export", "--list", "zpravodaj"],
        ["users", "list"],
        ["tokens", "list"],
        ["status", "--json"],
    ):
        czech, english = zpravodaj(*args), zpravodaj(*args, ZPRAVODAJ_LANGUAGE="en")
        assert czech.stdout == english.stdout, args
    exported = zpravodaj("subscribers", "export", "--list", "zpravodaj", ZPRAVODAJ_LANGUAGE="en")
    assert exported.stdout.splitlines()[0].startswith("email,name,status,subscribed_at")
    assert "coordinator\tactive\tostrava-psb" in zpravodaj("users", "list").stdout
