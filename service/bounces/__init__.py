"""Bounces: who could not be reached, and the suppression that follows.

- `verp`: the per-delivery envelope sender (bounces+TOKEN@domain) that names
  the delivery a bounce is about, even when the bounce itself is mangled.
- `parsing`: turns one bounce message into failed recipients (RFC 3464 DSNs
  parsed here; the non-standard forms by flufl.bounce, Mailman's detectors).
- `recording`: stores bounces, scores soft ones, suppresses, reactivates.
"""
