"""Benchmark: does POST /subscribe take longer for a new address than for a known one?

Issue 11, finding 8: the review measured a median of 170 ms for a new address
against 129 ms for a confirmed one, so the form's timing told whether an
address was subscribed. This drives the app through Flask's test client
(SQLite in a temporary folder, a private Redis, no SMTP server: the mails stay
queued, nothing leaves the machine), alternating a new address and a
confirmed one, and prints both medians and their ratio. A ratio near 1.00
means the answer time no longer tells the two apart.

Run: .venv/bin/python bench/signup_timing.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import update

from service import create_app
from service.clock import utcnow
from service.dev.redis_server import PrivateRedis
from service.extensions import db
from service.models import MailingList, Subscription


def main(n: int) -> None:
    with PrivateRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
                "REDIS_URL": redis.url,
                # A closed port on loopback: no worker runs, so nothing is ever sent.
                "SMTP_URL": "smtp://127.0.0.1:9",
                "SECRET_KEY": "bench",
                "RATE_LIMITS": False,
                # The hourly cap would stop the known address's mails after three
                # and make its path shorter still; measure the paths themselves.
                "CONFIRMATION_MAILS_PER_HOUR": 10**9,
            }
        )
        with app.app_context():
            db.create_all()
            db.session.add(MailingList(slug="zpravodaj", name="Zpravodaj sociálního bydlení"))
            db.session.commit()
            client = app.test_client()

            known = "potvrzena.ctenarka@seznam.cz"
            assert client.post("/subscribe", data={"email": known}).status_code == 202
            db.session.execute(
                update(Subscription).values(status="confirmed", confirmed_at=utcnow())
            )
            db.session.commit()

            def timed(address: str) -> float:
                start = time.perf_counter()
                response = client.post("/subscribe", data={"email": address})
                elapsed = time.perf_counter() - start
                assert response.status_code == 202, response.status_code
                return elapsed

            for i in range(5):  # warm-up: templates compiled, connections open
                timed(f"zahrati{i}@seznam.cz")
                timed(known)
            new_times, known_times = [], []
            for i in range(n):  # alternated, so drift hits both alike
                new_times.append(timed(f"novy.ctenar{i}@seznam.cz"))
                known_times.append(timed(known))

    new_median = statistics.median(new_times) * 1000
    known_median = statistics.median(known_times) * 1000
    print(f"sign-ups per path: {n}")
    print(f"new address:       median {new_median:7.2f} ms")
    print(f"confirmed address: median {known_median:7.2f} ms")
    print(f"ratio new/confirmed: {new_median / known_median:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
