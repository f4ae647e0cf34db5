"""Property-based tests (hypothesis): address normalisation and the public sign-up endpoint.

The `security` profile (registered below) disables the deadline (the database
and Redis take their time) and allows the function-scoped `app` fixture: one
app serves every example of a test, and examples do not need a fresh database
(the properties hold whatever earlier examples stored).

The suite's run is short and derandomised: the same examples every run, so a
red run is reproducible and never a coin toss. `FUZZ=long` explores: fresh
random examples, ten times as many (a failure prints its reproduction blob).
"""

from __future__ import annotations

import json
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.addresses import InvalidAddress, parse_address

LONG = os.environ.get("FUZZ") == "long"
settings.register_profile(
    "security",
    deadline=None,
    database=None,  # the working tree is shared; failures print their reproduction blob
    print_blob=True,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = settings.get_profile("security")


def examples(short: int) -> int:
    """How many examples a property gets: `short` in the suite, ten times that with FUZZ=long."""
    return short * 10 if LONG else short


# --- address normalisation (service/addresses.py) -------------------------------------

LINE_BREAKS = "\r\n\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e"
ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
unicode_label = st.text("ěščřžýáíéúůňťďóabc", min_size=1, max_size=8)
tld = st.sampled_from(["cz", "sk", "com", "org", "eu", "example", "xn--p1ai", "CZ", "Com"])
local = st.text(ATEXT, min_size=1, max_size=20).filter(lambda s: ".." not in s)
plausible = st.builds(
    lambda lp, labels, top: f"{lp}@{'.'.join(labels)}.{top}",
    st.one_of(local, st.text("jánŘŠ.", min_size=1, max_size=10)),
    st.lists(st.one_of(label, unicode_label), min_size=1, max_size=3),
    tld,
)
# Plausible addresses, damaged ones, and anything at all.
candidates = st.one_of(
    plausible,
    st.builds(lambda a, b: a + b, plausible, st.text(LINE_BREAKS + " \t\u00a0", max_size=3)),
    st.builds(
        lambda a, i, c: a[:i] + c + a[i:],
        plausible,
        st.integers(0, 30),
        st.sampled_from([*LINE_BREAKS, "\x00", "\u200b", "\ud800", "@", " ", '"']),
    ),
    st.emails(),
    st.text(max_size=80),
)
anything = st.one_of(
    candidates,
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def parse(raw, smtputf8: bool = True):
    return parse_address(raw, allow_smtputf8=smtputf8)


@settings(PROFILE, max_examples=examples(1500))
@given(raw=anything, smtputf8=st.booleans())
def test_parsing_raises_nothing_but_invalid_address(raw, smtputf8):
    try:
        address = parse(raw, smtputf8)
    except InvalidAddress:
        return
    # Whatever is accepted is one line, without any white space or control character.
    for text in (address.email, address.ascii_email or "", address.key):
        assert not any(c.isspace() or c in LINE_BREAKS or ord(c) < 32 for c in text), text
        assert text.count("@") <= 1
    assert "@" in address.email
    if not smtputf8:
        assert address.ascii_email is not None and address.ascii_email.isascii()


@settings(PROFILE, max_examples=examples(800))
@given(raw=candidates)
def test_normalising_is_idempotent(raw):
    try:
        address = parse(raw)
    except InvalidAddress:
        return
    again = parse(address.email)
    assert again == address
    assert parse(address.key).key == address.key
    if address.ascii_email is not None:
        # The ASCII (IDNA) form names the same subscriber.
        assert parse(address.ascii_email).key == address.key


@settings(PROFILE, max_examples=examples(800))
@given(raw=plausible, flips=st.lists(st.booleans(), min_size=1, max_size=60))
def test_case_variants_have_the_same_key(raw, flips):
    variant = "".join(c.swapcase() if flips[i % len(flips)] else c for i, c in enumerate(raw))
    try:
        first, second = parse(raw), parse(variant)
    except InvalidAddress:
        return
    assert first.key == second.key


# --- the sign-up endpoint -----------------------------------------------------------------


def json_containers(children):
    """Lists and objects of `children` (a named function: hypothesis cannot read a
    lambda split over lines and warns that it does not recurse)."""
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=40),
        st.sampled_from(["zpravodaj", "novinky", "ostrava-psb", "neexistuje", "jana@seznam.cz"]),
    ),
    json_containers,
    max_leaves=12,
)
huge_text = st.builds(
    lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1000, 400_000)
)
emails = st.one_of(plausible, st.emails(), st.text(max_size=60), huge_text)
names = st.one_of(st.text(max_size=60), huge_text, st.just("<script>alert(1)</script>"))
slugs = st.one_of(
    st.sampled_from(["zpravodaj", "novinky", "ostrava-psb", "neexistuje", ""]),
    st.text(max_size=30),
)
json_bodies = st.fixed_dictionaries(
    {},
    optional={
        "email": st.one_of(emails, json_values),
        "name": st.one_of(names, json_values),
        "list": st.one_of(slugs, st.lists(slugs, max_size=5), json_values),
        "consent": st.one_of(st.text(max_size=70), json_values),
        "website": st.one_of(st.just(""), st.text(max_size=5)),
    },
).map(lambda d: d)
form_bodies = st.fixed_dictionaries(
    {},
    optional={
        "email": emails,
        "name": names,
        "list": st.lists(slugs, max_size=4),
        "list_choice": st.sampled_from(["1", "", "x"]),
        "form": st.sampled_from(["embed", "page", ""]),
        "consent": st.text(max_size=70),
    },
)

# Every answer speaks Czech: one of these is in its body.
CZECH = (
    "Neplatný e-mail.",
    "Jméno",
    "Vyberte alespoň jeden odběr.",
    "Tento odběr neexistuje.",
    "Požadavek se nepodařilo přečíst.",
    "Požadavek je příliš velký.",
    "Nepodporovaný formát požadavku.",
    "Příliš mnoho pokusů.",
    "Zkontrolujte",  # the "check your mailbox" page
)
ALLOWED = {202, 400, 413, 415, 422, 429}


def check_answer(response, *, is_json: bool) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.data[:300])
    body = response.get_data(as_text=True)
    if is_json or response.mimetype == "application/json":
        data = json.loads(body)
        if response.status_code == 202:
            assert data == {"status": "pending"}
        else:
            messages = list(data["errors"].values())
            assert messages and all(any(c in m for c in CZECH) for m in messages), data
    else:
        assert any(c in body for c in CZECH), body[:500]


@settings(PROFILE, max_examples=examples(400))
@given(payload=json_bodies)
def test_json_signups_never_fail_and_always_answer_in_czech(client, payload):
    response = client.post("/subscribe", json=payload)
    check_answer(response, is_json=True)


@settings(PROFILE, max_examples=examples(100))
@given(body=st.one_of(json_values, st.text(max_size=100)))
def test_any_json_document_is_answered_cleanly(client, body):
    response = client.post("/subscribe", data=json.dumps(body), content_type="application/json")
    check_answer(response, is_json=True)


@settings(PROFILE, max_examples=examples(400))
@given(fields=form_bodies)
def test_form_signups_never_fail_and_always_answer_in_czech(client, fields):
    response = client.post("/subscribe", data=fields)
    check_answer(response, is_json=False)


@settings(PROFILE, max_examples=examples(150))
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json; charset=latin-1",
            "",
        ]
    ),
)
def test_raw_bodies_never_fail(client, body, content_type):
    response = client.post("/subscribe", data=body, content_type=content_type)
    assert response.status_code in ALLOWED, (response.status_code, response.data[:300])
