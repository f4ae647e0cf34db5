"""Group pages: the public page with its join form, the members' page, Czech meeting times."""

from __future__ import annotations

from datetime import datetime

import pytest

from service.groups.dates import format_meeting_time


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Winter time: UTC+1.
        (datetime(2026, 12, 10, 8, 30), datetime(2026, 12, 10, 10, 30),
         "čtvrtek 10. prosince 2026 od 9:30 do 11:30"),
        # Summer time: UTC+2.
        (datetime(2026, 6, 2, 12, 0), datetime(2026, 6, 2, 13, 45),
         "úterý 2. června 2026 od 14:00 do 15:45"),
        # Past midnight in Prague: both days, weekdays in the genitive.
        (datetime(2026, 7, 10, 7, 5), datetime(2026, 7, 11, 10, 30),
         "od pátku 10. července 2026 9:05 do soboty 11. července 2026 12:30"),
    ],
)  # fmt: skip
def test_meeting_time_in_czech_and_prague_time(start, end, expected):
    assert format_meeting_time(start, end) == expected
