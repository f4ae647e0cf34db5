"""Meetings of working groups: invitations, updates, cancellations, reminders.

`rules.py` holds what a meeting may be and how it changes (validation,
update, cancel); `calendar.py` what its mails carry (iCalendar, the
meeting's box in the mail); `reminders.py` the reminder before it;
`routes.py` the public .ics download.
"""
