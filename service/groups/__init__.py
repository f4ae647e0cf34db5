"""Working groups (DESIGN.md §1.3): members, invitations, join requests, group pages.

`membership.py` holds what coordinators do (invite, approve, decline, remove);
`joining.py` what visitors and members do (ask to join, accept an
invitation); `routes.py` the public and members' pages.
"""
