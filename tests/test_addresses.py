"""Address validation: what a person can type or paste into the form."""

from __future__ import annotations

import pytest

from service.addresses import InvalidAddress, parse_address

VALID = [
    ("jan.novak@seznam.cz", "jan.novak@seznam.cz"),
    ("Jana.Dvorakova@Email.CZ", "Jana.Dvorakova@email.cz"),
    ("  petra@centrum.cz  ", "petra@centrum.cz"),  # spaces around are trimmed
    ("\tpodatelna@ostrava.cz\t", "podatelna@ostrava.cz"),
    ("socialni.odbor@mmo.cz", "socialni.odbor@mmo.cz"),
    ("ospod+zpravodaj@praha14.cz", "ospod+zpravodaj@praha14.cz"),
    ("k.novotna@mesto-chomutov.cz", "k.novotna@mesto-chomutov.cz"),
    ("info@steti.cz", "info@steti.cz"),
    ("a@b.cz", "a@b.cz"),
    ("user_name@gmail.com", "user_name@gmail.com"),
    ("o'brien@example.org", "o'brien@example.org"),
    ("x" * 64 + "@seznam.cz", "x" * 64 + "@seznam.cz"),
    ("nadace@sub.domena.spolek.cz", "nadace@sub.domena.spolek.cz"),
]

INVALID = [
    ("", "empty"),
    ("   ", "white space only"),
    ("jan.novakseznam.cz", "missing @"),
    ("jan@@seznam.cz", "doubled @"),
    ("jan@novak@seznam.cz", "two @"),
    ("jan novak@seznam.cz", "space inside"),
    ("jan@sez nam.cz", "space in domain"),
    ("jan@seznam,cz", "comma for a dot"),
    ("jan,novak@seznam.cz", "comma in local part"),
    ("jan..novak@seznam.cz", "consecutive dots"),
    (".jan@seznam.cz", "leading dot"),
    ("jan.@seznam.cz", "trailing dot in local part"),
    ("jan@seznam..cz", "consecutive dots in domain"),
    ("jan@.seznam.cz", "leading dot in domain"),
    ("jan@seznam.cz.", "trailing dot in domain"),
    ("jan@seznam", "missing TLD"),
    ("jan@", "missing domain"),
    ("@seznam.cz", "missing local part"),
    ("jan@seznam.c", "one-letter TLD"),
    ("jan@seznam.123", "numeric TLD"),
    ("jan@localhost", "localhost"),
    ("jan@[127.0.0.1]", "IP literal"),
    ("jan@127.0.0.1", "bare IP"),
    ("jan@[IPv6:::1]", "IPv6 literal"),
    ("jan@my_domain.cz", "underscore in domain"),
    ("jan@-seznam.cz", "label starting with hyphen"),
    ("jan@seznam-.cz", "label ending with hyphen"),
    ("jan\u200b@seznam.cz", "zero-width space"),
    ("jan@seznam.cz\u200b", "trailing zero-width space"),
    ("\ufeffjan@seznam.cz", "byte-order mark"),
    ("jan\u00a0@seznam.cz", "no-break space inside"),
    ("\u00a0jan@seznam.cz", "leading no-break space"),
    ("jan@seznam.cz\u00a0", "trailing no-break space"),
    ("jan\u2060@seznam.cz", "word joiner"),
    ("jan@seznam.cz, eva@seznam.cz", "two addresses with comma"),
    ("jan@seznam.cz;eva@seznam.cz", "two addresses with semicolon"),
    ("jan@seznam.cz eva@seznam.cz", "two addresses with space"),
    ("Jan Novák <jan@seznam.cz>", "display name"),
    ("<jan@seznam.cz>", "angle brackets"),
    ("jan@seznam.cz\r\nBcc: x@seznam.cz", "header injection CRLF"),
    ("jan@seznam.cz\n", "trailing line feed"),
    ("jan\r@seznam.cz", "carriage return"),
    ("x" * 65 + "@seznam.cz", "local part over 64 octets"),
    ("jan@" + "a" * 64 + ".cz", "domain label over 63 octets"),
    ("jan@" + ".".join(["a" * 60] * 5) + ".cz", "domain over 253 octets"),
    ('"jan novak"@seznam.cz', "quoted local part"),
    ('"jan"@seznam.cz', "quoted simple local part"),
    ("jan(komentar)@seznam.cz", "comment"),
    ("jan@seznam.cz.invalid", "special-use TLD"),
    ("jan@example.local", "mDNS domain"),
    ("jan@test", "single-label special-use"),
    ("mailto:jan@seznam.cz", "mailto prefix"),
    ("jan@seznam.cz?subject=x", "query string"),
    ("jan\\@seznam.cz", "backslash"),
    ("jan@xn--.cz", "broken punycode"),
]


@pytest.mark.parametrize(("raw", "normalized"), VALID)
def test_valid_addresses_are_accepted_and_normalized(raw, normalized):
    address = parse_address(raw, allow_smtputf8=False)
    assert address.email == normalized
    assert address.ascii_email == normalized


@pytest.mark.parametrize(("raw", "why"), INVALID, ids=[why for _, why in INVALID])
def test_invalid_addresses_are_refused(raw, why):
    with pytest.raises(InvalidAddress):
        parse_address(raw, allow_smtputf8=True)


@pytest.mark.parametrize("raw", [None, 42, ["jan@seznam.cz"], {"email": "jan@seznam.cz"}])
def test_non_text_is_refused(raw):
    with pytest.raises(InvalidAddress):
        parse_address(raw, allow_smtputf8=True)


def test_idn_domain_is_accepted_and_mailed_in_ascii():
    address = parse_address("petr@příklad.cz", allow_smtputf8=False)
    assert address.email == "petr@příklad.cz"
    assert address.ascii_email == "petr@xn--pklad-zsa96e.cz"
    assert not address.needs_smtputf8


def test_idn_domain_written_in_punycode_is_the_same_address():
    typed_unicode = parse_address("petr@příklad.cz", allow_smtputf8=False)
    typed_ascii = parse_address("petr@xn--pklad-zsa96e.cz", allow_smtputf8=False)
    assert typed_unicode.key == typed_ascii.key


def test_diacritics_in_local_part_need_smtputf8():
    with pytest.raises(InvalidAddress):
        parse_address("jiří.novák@seznam.cz", allow_smtputf8=False)
    address = parse_address("jiří.novák@seznam.cz", allow_smtputf8=True)
    assert address.email == "jiří.novák@seznam.cz"
    assert address.ascii_email is None
    assert address.needs_smtputf8


def test_key_is_case_folded():
    assert parse_address("Jan.Novak@Seznam.CZ", allow_smtputf8=False).key == "jan.novak@seznam.cz"


def test_domains_are_checked_once_and_judged_as_email_validator_judges_them():
    """addresses._remember_domains keeps email-validator's domain checks (imports of
    thousands of addresses share a few domains); the verdicts must stay its own."""
    import importlib

    remembered = importlib.import_module(
        "email_validator.validate_email"
    ).validate_email_domain_name
    assert hasattr(remembered, "cache_info"), "email-validator changed: see _remember_domains"
    for domain in ("Příklad.CZ", "seznam.cz", "xn--pklad-zsa96e.cz", "Email.CZ"):
        for _ in range(2):
            assert remembered(domain) == remembered.uncached(domain)
        assert parse_address(f"jana@{domain}", allow_smtputf8=False).email == (
            "jana@" + remembered.uncached(domain)["domain"]
        )
    for bad in ("-bad-.cz", "a..cz", "pod_trzitko.cz", "localhost"):
        for _ in range(2):  # refused every time, never remembered as valid
            with pytest.raises(InvalidAddress):
                parse_address(f"jana@{bad}", allow_smtputf8=False)
    assert remembered.cache_info().hits >= 4
