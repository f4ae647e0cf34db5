"""One logging set-up: LOG_FORMAT, request ids from trusted proxies only, job and issue ids."""

from __future__ import annotations

import json
import logging
import re

import pytest

from service import create_app
from service.config import ConfigError
from service.extensions import db
from service.logging_setup import bind, configure, log_context
from tests.conftest import add_confirmed_subscribers, make_config, run_jobs
from tests.workers.test_delivery import make_issue, send

HEX_ID = re.compile(r"[0-9a-f]{32}")


def json_lines(text: str) -> list[dict]:
    """The JSON log lines of captured stderr (every line must be one object)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def json_app(app):
    app.config["LOG_FORMAT"] = "json"
    configure("json")
    yield app
    configure("text")


def test_json_lines_have_time_level_logger_message(capsys):
    configure("json")
    try:
        with log_context(request_id="r-1"):
            logging.getLogger("service.test").info("ahoj %s", "světe")
        logging.getLogger("workers.test").warning("bez kontextu")
    finally:
        configure("text")
    first, second = json_lines(capsys.readouterr().err)
    assert first["message"] == "ahoj světe"
    assert first["level"] == "INFO"
    assert first["logger"] == "service.test"
    assert first["request_id"] == "r-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["time"])
    assert second["level"] == "WARNING"
    assert "request_id" not in second


def test_ids_bound_in_a_job_end_with_it_and_bind_outside_one_does_nothing(capsys):
    configure("json")
    log = logging.getLogger("service.test")
    try:
        bind(issue_id=7)  # e.g. a delivery function called outside any job
        with log_context(job_id="j-1"):
            bind(issue_id=8)
            log.info("uvnitř")
        log.info("venku")
    finally:
        configure("text")
    inside, outside = json_lines(capsys.readouterr().err)
    assert (inside["job_id"], inside["issue_id"]) == ("j-1", 8)
    assert "issue_id" not in outside
    assert "job_id" not in outside


def test_an_exception_is_kept_in_its_json_line(capsys):
    configure("json")
    try:
        try:
            raise ValueError("špatně")
        except ValueError:
            logging.getLogger("service.test").exception("selhalo")
    finally:
        configure("text")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "selhalo"
    assert "ValueError: špatně" in line["exception"]


def test_every_request_gets_an_id_echoed_and_logged(json_app, client, capsys):
    response = client.get("/subscribe", headers={"X-Request-ID": "from-the-client"})
    request_id = response.headers["X-Request-ID"]
    # No trusted proxy in front: anybody could have set the header, so it is not used.
    assert HEX_ID.fullmatch(request_id)
    lines = [line for line in json_lines(capsys.readouterr().err) if line.get("request_id")]
    access = [line for line in lines if line["logger"] == "service.access"]
    assert [line["request_id"] for line in access] == [request_id]
    assert access[0]["message"].startswith("GET /subscribe 200")
    assert client.get("/subscribe").headers["X-Request-ID"] != request_id


def test_the_access_line_names_the_route_not_the_token(json_app, client, capsys):
    client.get("/unsubscribe/SECRET-TOKEN-VALUE")
    err = capsys.readouterr().err
    assert "SECRET-TOKEN-VALUE" not in err
    assert "GET /unsubscribe/<token>" in err


@pytest.mark.parametrize(
    ("given", "kept"),
    [("edge-7f3a9c.1", True), ("x" * 129, False), ("bad id; DROP", False)],
)
def test_a_trusted_proxy_sets_the_request_id(database_url, redis_url, outbox, given, kept):
    app = create_app(make_config(database_url, redis_url, outbox.url, PROXY_FIX=1))
    response = app.test_client().get("/healthz", headers={"X-Request-ID": given})
    echoed = response.headers["X-Request-ID"]
    if kept:
        assert echoed == given
    else:
        assert HEX_ID.fullmatch(echoed)


def test_text_lines_name_the_request(app, client, capsys):
    response = client.get("/subscribe")
    err = capsys.readouterr().err
    assert f"INFO service.access [request {response.headers['X-Request-ID']}]: GET" in err


def test_every_line_of_a_job_names_the_job_and_the_issue(json_app, capsys):
    json_app.config["BATCH_SIZE"] = 5
    add_confirmed_subscribers("zpravodaj", 8)
    issue = make_issue()
    send(issue)
    capsys.readouterr()
    run_jobs(json_app)
    lines = json_lines(capsys.readouterr().err)
    sent = [line for line in lines if line["message"] == f"issue {issue.id} sent"]
    assert len(sent) == 1
    assert sent[0]["job_id"].startswith("issue-batch-")
    assert sent[0]["issue_id"] == issue.id
    # RQ's own lines about a job, logged while it runs, carry the job's id too.
    rq_lines = [line for line in lines if line["logger"].startswith("rq.") and "job_id" in line]
    assert rq_lines
    # Nothing leaks from one job into the next or out of the jobs.
    configure("json")
    logging.getLogger("service.test").info("po práci")
    (after,) = json_lines(capsys.readouterr().err)
    assert "job_id" not in after
    assert "issue_id" not in after
    db.session.remove()


def test_an_unknown_log_format_is_refused_at_start(database_url, redis_url, outbox):
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        create_app(make_config(database_url, redis_url, outbox.url, LOG_FORMAT="xml"))
