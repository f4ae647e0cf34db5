"""A personal line's quoted-printable, built per recipient from its pre-mapped template,
is byte for byte what the `email` package makes of the filled line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.issues.rendering import (
    ATTENDEE_SLOT,
    PLACEHOLDERS,
    RSVP_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    PersonalLine,
    _qp,
)

# Text with what makes quoted-printable hard: diacritics, '=', spaces and tabs at the
# end, long runs that need soft breaks exactly where an escape begins.
TEXT = st.text(alphabet=st.sampled_from(list('aá =\tř<>"/?&-.:;,éŽx9')), max_size=200)
VALUE = st.text(alphabet=st.sampled_from(list("abc=?/:.-_~ řÁ\r\n")), max_size=160)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(TEXT, st.sampled_from(PLACEHOLDERS)), min_size=1, max_size=3),
    tail=TEXT,
    values=st.fixed_dictionaries({p: VALUE for p in PLACEHOLDERS}),
)
def test_personal_line_encodes_like_the_email_package(pieces, tail, values):
    template = "".join(text + placeholder for text, placeholder in pieces) + tail
    filled = template
    for placeholder, value in values.items():
        filled = filled.replace(placeholder, value)
    assert PersonalLine(template).encode(values) == _qp(filled)


def test_a_long_link_line_and_a_calendar_slot():
    link = (
        '<a class="rsvp-choice" style="display:inline-block;margin:4px 8px 4px 0;padding:6px '
        f'14px" href="{RSVP_PLACEHOLDER}?odpoved=prijdu">Přijdu</a> '
    ) * 3 + f"<a href='{UNSUBSCRIBE_PLACEHOLDER}'>x</a>  "
    values = {
        RSVP_PLACEHOLDER: "https://zpravodaj.example/rsvp/12.AbC-_9.xyz=",
        UNSUBSCRIBE_PLACEHOLDER: "https://zpravodaj.example/unsubscribe/eyJz.abc",
    }
    filled = link.replace(RSVP_PLACEHOLDER, values[RSVP_PLACEHOLDER]).replace(
        UNSUBSCRIBE_PLACEHOLDER, values[UNSUBSCRIBE_PLACEHOLDER]
    )
    assert PersonalLine(link).encode(values) == _qp(filled)
    attendee = (
        'ORGANIZER;CN="Skupina":mailto:rsvp+m1-ab@x.cz\r\nATTENDEE;CN="Jan Novák":mailto:j@x.cz'
    )
    assert PersonalLine(ATTENDEE_SLOT).encode({ATTENDEE_SLOT: attendee}) == _qp(attendee)
