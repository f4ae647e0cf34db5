"""What the worker's SMTP client writes is byte for byte what smtplib would write."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.smtp import dot_stuffed

# Lines of dots, line breaks of every kind and ordinary text, in any order.
MESSAGES = st.lists(
    st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b" .", b".\r\n"]), max_size=40
).map(b"".join)


@settings(deadline=None)
@given(MESSAGES)
def test_dot_stuffing_is_smtplib_s(raw: bytes) -> None:
    assert dot_stuffed(raw) == re.sub(rb"(?m)^\.", b"..", raw)


def test_a_message_with_leading_dots_is_stuffed_on_every_line() -> None:
    raw = b".first\r\nsecond\r\n.third\r\n..fourth\r\n"
    assert dot_stuffed(raw) == b"..first\r\nsecond\r\n..third\r\n...fourth\r\n"
