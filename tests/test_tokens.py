"""Signed links: the service's own HMAC shortcut makes itsdangerous's tokens exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from service.tokens import _SignerOnceSerializer

KEYS = ["an-older-key", "the-current-key"]
PAYLOADS = st.dictionaries(
    st.sampled_from(["s", "l", "m", "o"]),
    st.one_of(st.none(), st.text(max_size=60), st.integers(), st.lists(st.text(max_size=8))),
)


@settings(max_examples=200, deadline=None)  # no timed assertion on a loaded machine
@given(payload=PAYLOADS, salt=st.sampled_from(["zpravodaj.unsubscribe", "zpravodaj.confirm"]))
def test_tokens_are_byte_for_byte_itsdangerous_s(payload, salt) -> None:
    """Same payload, same second: the same token as itsdangerous's own serializer (the
    links in mails already sent, and the tokens verified by any key, stay valid)."""
    ours = _SignerOnceSerializer(KEYS, salt=salt)
    theirs = URLSafeTimedSerializer(KEYS, salt=salt)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_796_000_000)
        token = ours.dumps(payload)
        assert token == theirs.dumps(payload)
    assert theirs.loads(token) == payload
    assert ours.loads(token) == payload


def test_a_long_payload_is_compressed_as_itsdangerous_does() -> None:
    token = _SignerOnceSerializer(KEYS, salt="x").dumps({"s": "k" * 300})
    assert token.startswith(".")  # zlib-compressed, as itsdangerous marks it
    assert URLSafeTimedSerializer(KEYS, salt="x").loads(token) == {"s": "k" * 300}


def test_a_token_signed_with_another_salt_does_not_verify() -> None:
    token = _SignerOnceSerializer(KEYS, salt="zpravodaj.unsubscribe").dumps({"s": "k"})
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(KEYS, salt="zpravodaj.confirm").loads(token)
