"""Reading the sign-up form, posted as HTML form data or as JSON, into one shape."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from flask import Request
from flask_babel import lazy_gettext as _l

from ..addresses import INVALID_ADDRESS_MESSAGE, Address, InvalidAddress, parse_address_for_app
from ..errors import MESSAGES

NAME_MAX_LENGTH = 200
NAME_TOO_LONG = _l("Jméno je příliš dlouhé (nejvýše 200 znaků).")
NAME_BAD_CHARACTERS = _l("Jméno obsahuje nepovolené znaky.")
NO_LIST_CHOSEN = _l("Vyberte alespoň jeden odběr.")
UNKNOWN_LIST = _l("Tento odběr neexistuje.")
BAD_REQUEST = MESSAGES[400]

# Stable, machine-readable codes of the form's messages: the JSON answer carries
# them beside the translated text (`"codes": {"email": "invalid_email"}`), so a
# website's script can react without parsing Czech or English.
ERROR_CODES = {
    "invalid_email": INVALID_ADDRESS_MESSAGE,
    "name_too_long": NAME_TOO_LONG,
    "name_bad_characters": NAME_BAD_CHARACTERS,
    "no_list_chosen": NO_LIST_CHOSEN,
    "unknown_list": UNKNOWN_LIST,
    "bad_request": BAD_REQUEST,
    "rate_limited": MESSAGES[429],
}


def error_codes(errors: dict[str, str]) -> dict[str, str]:
    """The code of each field's message (`invalid_email`…); `invalid` for one without a code."""
    by_text = {str(message): code for code, message in ERROR_CODES.items()}
    return {name: by_text.get(str(message), "invalid") for name, message in errors.items()}


class UnreadableRequest(ValueError):
    """The body is not a form or a JSON object."""


@dataclass
class SubscribeInput:
    email: str = ""
    name: str = ""
    list_slugs: list[str] = field(default_factory=list)
    # Set by the HTML form, which shows tick boxes: nothing ticked is an error
    # there, while a bare API post without `list` means the default newsletter.
    list_choice_shown: bool = False
    honeypot: str = ""
    embed: bool = False
    consent_hash: str | None = None
    is_json: bool = False

    @classmethod
    def from_request(cls, request: Request) -> SubscribeInput:
        if request.is_json:
            # Absurdly nested JSON never gets here: input_guard refuses it first.
            data = request.get_json(silent=True)
            if not isinstance(data, dict):
                raise UnreadableRequest(str(BAD_REQUEST))
            lists = data.get("list", [])
            if isinstance(lists, str):
                lists = [lists]
            if not isinstance(lists, list) or not all(isinstance(s, str) for s in lists):
                raise UnreadableRequest(str(BAD_REQUEST))
            return cls(
                email=data.get("email", ""),
                name=_text(data.get("name")),
                list_slugs=lists,
                honeypot=_text(data.get("website")),
                consent_hash=_text(data.get("consent")) or None,
                is_json=True,
            )
        form = request.form
        # The first value of each field (`form.get` would build and catch an exception
        # for each field not posted: service/request_values.py).
        fields = form.to_dict()
        return cls(
            email=fields.get("email", ""),
            name=fields.get("name", ""),
            list_slugs=form.getlist("list"),
            list_choice_shown=fields.get("list_choice") == "1",
            honeypot=fields.get("website", ""),
            embed=fields.get("form") == "embed",
            consent_hash=fields.get("consent") or None,
        )

    @property
    def email_text(self) -> str:
        """What was typed, for showing the form again (non-text JSON becomes empty)."""
        return self.email if isinstance(self.email, str) else ""


@dataclass
class ValidatedSignup:
    address: Address
    name: str


def validate(data: SubscribeInput) -> tuple[ValidatedSignup | None, dict[str, str]]:
    """Check the address and name; returns (result, errors by field)."""
    errors: dict[str, str] = {}
    address = None
    try:
        address = parse_address_for_app(data.email)
    except InvalidAddress:
        errors["email"] = str(INVALID_ADDRESS_MESSAGE)
    name = data.name.strip()
    problem = name_problem(name)
    if problem:
        errors["name"] = problem
    if errors or address is None:
        return None, errors
    return ValidatedSignup(address=address, name=name), errors


def name_problem(name: str) -> str | None:
    """What is wrong with a (stripped) name, in the request's language, or None when it is fine."""
    if len(name) > NAME_MAX_LENGTH:
        return str(NAME_TOO_LONG)
    if any(unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029" for ch in name):
        # Control and format characters, and the Unicode line and paragraph
        # separators: line breaks would inject headers, others hide text.
        return str(NAME_BAD_CHARACTERS)
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
