"""The delivery's per-message record-and-claim statement sent on PostgreSQL without
waiting for its result, so its round trip and commit overlap the message's SMTP
envelope (workers/delivery.py, `_Statements.start_claim`).

A module of its own, imported only by a worker on PostgreSQL: psycopg and the
libraries its wheel bundles stay out of a SQLite worker's memory.
"""

from __future__ import annotations

import re
import select as io_select
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg import pq


class ClaimsInFlight:
    """RECORD_AND_CLAIM sent on PostgreSQL without waiting for its result, on libpq's
    asynchronous API under psycopg's connection (the connection is in autocommit
    and psycopg has set it non-blocking).

    The statement is prepared once per server session under a name of its own
    (again if psycopg deallocated it), its parameters sent as text with explicit
    casts: nothing depends on psycopg's adaptation. One statement is
    in flight at most, and every path waits for it (`wait` or `drain`) before
    the connection runs anything else.
    """

    NAME = b"zpravodaj_record_and_claim"
    TYPES: ClassVar[dict[str, str]] = {
        "sent_id": "bigint", "message_id": "text", "now": "timestamp", "claim_id": "bigint",
        "subscriber_id": "bigint", "list_id": "bigint", "issue_id": "bigint",
        "batch_id": "bigint", "owner": "text",
    }  # fmt: skip

    def __init__(self, pgconn: Any, sql: str) -> None:
        self.pgconn = pgconn
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.names:
                self.names.append(name)
            return f"(${self.names.index(name) + 1}::{self.TYPES[name]})"

        self.sql = re.sub(r":(\w+)", number, sql)
        self.in_flight = False
        self.params: dict[str, Any] = {}

    def prepare(self) -> None:
        result = self.pgconn.prepare(self.NAME, self.sql.encode())
        if result.status != pq.ExecStatus.COMMAND_OK and (
            result.error_field(pq.DiagnosticField.SQLSTATE) != b"42P05"  # prepared already
        ):
            raise psycopg.errors.error_from_result(result)

    def send(self, params: dict[str, Any]) -> None:
        self.drain()  # never two at once (every path waits already)
        self.params = params
        values = [as_text(params[name]) for name in self.names]
        self.pgconn.send_query_prepared(self.NAME, values)
        self.in_flight = True
        while self.pgconn.flush():  # non-blocking: the query did not all fit the socket yet
            ready = wait_for(self.pgconn.socket, io_select.POLLIN | io_select.POLLOUT)
            if ready & io_select.POLLIN:
                self.pgconn.consume_input()

    def wait(self) -> list[int]:
        """The ids the statement touched, once its transaction is committed (libpq
        reports the end of the statement only after ReadyForQuery, which the
        server sends after the commit and, with synchronous_commit on, the flush)."""
        results = []
        pgconn = self.pgconn
        try:
            while True:
                while pgconn.is_busy():
                    wait_for(pgconn.socket, io_select.POLLIN)
                    pgconn.consume_input()
                result = pgconn.get_result()
                if result is None:
                    break
                results.append(result)
        except BaseException:
            # Still in flight unless the connection is gone: a wait cut short (by a
            # signal's exception, say) leaves it to `drain`, never to the pool.
            if pgconn.status == pq.ConnStatus.BAD:
                self.in_flight = False
            raise
        self.in_flight = False
        rows: list[int] = []
        for result in results:
            if result.status == pq.ExecStatus.TUPLES_OK:
                rows += (int(result.get_value(i, 0)) for i in range(result.ntuples))
            elif result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000":
                # Deallocated under us: psycopg runs DEALLOCATE ALL after a ROLLBACK
                # or DROP on this connection when it has prepared statements of its
                # own. Nothing ran; prepare it again and send it again.
                self.prepare()
                self.send(self.params)
                return self.wait()
            else:
                raise psycopg.errors.error_from_result(result)
        return rows

    def drain(self) -> None:
        """Wait for a statement still in flight (after an error elsewhere)."""
        if self.in_flight:
            self.wait()


def wait_for(fd: int, events: int) -> int:
    """Block (the GIL released, so the lease keeper runs) until `fd` is ready for
    `events`; returns the events that happened (an error or hang-up counts too)."""
    poll = io_select.poll()
    poll.register(fd, events)
    return next((happened for _, happened in poll.poll()), 0)


def as_text(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text format (the statement casts each one)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ").encode()
    return str(value).encode()
