"""`zpravodaj users …` and `zpravodaj tokens …`: accounts and API tokens from the command line."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from service.accounts import authenticate, user_for_token
from service.extensions import db
from service.models import ApiToken, User

GOOD = "dlouhé-heslo-42"


def make_user(runner, *args: str, password_input: str = f"{GOOD}\n{GOOD}\n"):
    return runner.invoke(args=["users", "create", *args], input=password_input)


def test_editor_is_created_with_the_password_typed_twice(app, runner):
    result = make_user(runner, "Redakce@Example.cz", "--role", "editor")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).filter_by(email="redakce@example.cz"))
    assert user.role == "editor"
    assert authenticate("redakce@example.cz", GOOD) is not None
    assert GOOD not in user.password_hash


def test_coordinator_is_scoped_to_the_given_groups(app, runner):
    result = make_user(
        runner, "k@ostrava.example", "--role", "coordinator", "--list", "ostrava-psb"
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).filter_by(email="k@ostrava.example"))
    assert [m.slug for m in user.lists] == ["ostrava-psb"]


def test_windows_line_endings_from_a_pipe_are_not_part_of_the_password(app, runner):
    result = make_user(runner, "a@example.cz", "--role", "admin", password_input=f"{GOOD}\r\n" * 2)
    assert result.exit_code == 0, result.output
    assert authenticate("a@example.cz", GOOD) is not None


@pytest.mark.parametrize(
    ("args", "password_input", "message"),
    [
        (["--role", "editor"], f"{GOOD}\njine-heslo-42\n", "Zadaná hesla se neshodují."),
        (["--role", "editor"], "kratke\nkratke\n", "Heslo musí mít alespoň 10 znaků."),
        (["--role", "editor"], f"{GOOD}\n", "Zadejte heslo dvakrát"),
        (["--role", "editor"], "", "Zadejte heslo dvakrát"),
        (["--role", "coordinator"], f"{GOOD}\n{GOOD}\n", "alespoň jednu skupinu"),
        (["--role", "coordinator", "--list", "neni"], f"{GOOD}\n{GOOD}\n", "neexistuje"),
        (["--role", "coordinator", "--list", "zpravodaj"], f"{GOOD}\n{GOOD}\n", "není pracovní"),
        (["--role", "editor", "--list", "ostrava-psb"], f"{GOOD}\n{GOOD}\n", "jen koordinátorům"),
        (["--role", "šéf"], f"{GOOD}\n{GOOD}\n", "Invalid value for '--role'"),
    ],
)
def test_refused_account_is_a_clear_error_without_traceback(
    app, runner, args, password_input, message
):
    result = make_user(runner, "x@example.cz", *args, password_input=password_input)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not a crash
    assert db.session.scalar(select(User)) is None


def test_duplicate_account_is_refused(app, runner):
    assert make_user(runner, "r@example.cz", "--role", "editor").exit_code == 0
    result = make_user(runner, "R@example.cz", "--role", "admin")
    assert result.exit_code != 0
    assert "už existuje" in result.output


def test_invalid_address_is_refused_in_czech(app, runner):
    result = make_user(runner, "bez-zavinace", "--role", "editor")
    assert result.exit_code != 0
    assert "Neplatný e-mail." in result.output


def test_users_list_shows_roles_and_groups(app, runner, accounts):
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    assert "koordinator@ostrava.example\tcoordinator\tactive\tostrava-psb" in result.output
    assert "redakce@socialnibydleni.example\teditor" in result.output


def test_token_create_prints_only_a_working_token_stored_as_hash(app, runner, accounts):
    result = runner.invoke(args=["tokens", "create", "Redakce@socialnibydleni.example"])
    assert result.exit_code == 0, result.output
    # Only the token on stdout, so a script can do TOKEN=$(zpravodaj tokens create …).
    token = result.stdout.strip()
    assert "\n" not in token and token.startswith("zpr_")
    assert user_for_token(token).email == "redakce@socialnibydleni.example"
    row = db.session.scalar(select(ApiToken))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.prefix)


def test_token_for_unknown_or_inactive_account_is_refused(app, runner, accounts):
    result = runner.invoke(args=["tokens", "create", "nikdo@example.cz"])
    assert result.exit_code != 0
    assert "Účet nikdo@example.cz neexistuje." in result.output

    accounts.editor.active = False
    db.session.commit()
    result = runner.invoke(args=["tokens", "create", accounts.editor.email])
    assert result.exit_code != 0
    assert "vypnutý" in result.output


def test_tokens_list_and_revoke_by_prefix(app, runner, accounts):
    token = runner.invoke(args=["tokens", "create", accounts.editor.email]).output.strip()
    listed = runner.invoke(args=["tokens", "list", accounts.editor.email])
    assert token[:12] in listed.output
    assert token not in listed.output

    result = runner.invoke(args=["tokens", "revoke", token[:12]])
    assert result.exit_code == 0, result.output
    assert user_for_token(token) is None
    # Revoking again is harmless; an unknown token is an error.
    assert runner.invoke(args=["tokens", "revoke", token]).exit_code == 0
    unknown = runner.invoke(args=["tokens", "revoke", "zpr_neexistuje"])
    assert unknown.exit_code != 0
    assert "Takový token neexistuje." in unknown.output
