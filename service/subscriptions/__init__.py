"""Public subscription flow: the form, double opt-in, unsubscribe, preferences."""
