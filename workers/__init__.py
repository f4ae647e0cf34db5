"""RQ job functions and the worker that runs them inside the Flask app context.

The web process enqueues jobs here by dotted name (`workers.mail.send_outgoing`);
every job takes ids, loads what it needs from the database, and is safe to run
twice.
"""
