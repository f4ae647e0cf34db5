"""The baseline of bench/signup_throughput.py: a sign-up at the cost of one INSERT and one LPUSH.

A minimal Flask app served by the same gunicorn the same way: it reads the
posted address, inserts one row into a table of the same database and pushes
one item onto a Redis list. What the real `POST /subscribe` does beyond that
(validation, the consent text, the request row's columns, RQ's job) is what
the benchmark's ratio measures.

Settings from the environment: DATABASE_URL, REDIS_URL.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from redis import Redis
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
)

metadata = MetaData()
signups = Table(
    "baseline_signup",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("requested_at", DateTime, server_default=func.now()),
)

engine = create_engine(os.environ["DATABASE_URL"])


@event.listens_for(engine, "connect")
def _same_sqlite_settings_as_the_service(dbapi_connection, connection_record) -> None:
    """WAL and synchronous=NORMAL, as service/database.py sets them: the same disk cost."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


redis = Redis.from_url(os.environ["REDIS_URL"])
app = Flask(__name__)


@app.post("/subscribe")
def subscribe():
    email = request.form.get("email", "")
    with engine.begin() as connection:
        row_id = connection.execute(signups.insert().values(email=email)).inserted_primary_key[0]
    redis.lpush("baseline-signups", row_id)
    return jsonify(status="pending"), 202
