"""/metrics: what it counts, who may read it, and the facts read at scrape time."""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from service import create_app, tokens
from service.bounces.inbox import process_message
from service.bounces.recording import record_refusal
from service.config import ConfigError
from service.consent import RequestInfo, record
from service.dev.processes import free_port
from service.extensions import db
from service.jobs import redis_connection
from service.metrics import parse_networks
from service.models import Subscriber
from tests.bounces.test_bounces import bounce_bytes, send_issue
from tests.conftest import add_confirmed_subscribers, link_to, make_config, run_jobs
from tests.workers.test_delivery import make_issue, send
from workers.delivery import fan_out
from workers.reconcile import reconcile

Samples = dict[tuple[str, tuple], float]


def scrape(client, **kwargs) -> Samples:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a counter rose between two scrapes (the counters are per process, not per test)."""
    return value(after, name, **labels) - value(before, name, **labels)


# --- events ---------------------------------------------------------------------


def test_signup_confirmation_and_unsubscribe_are_counted_by_channel(app, client, outbox):
    before = scrape(client)
    response = client.post("/subscribe", data={"email": "jana@example.cz", "list": "zpravodaj"})
    assert response.status_code == 202
    response = client.post(
        "/subscribe", json={"email": "petr@example.cz", "list": ["zpravodaj", "novinky"]}
    )
    assert response.status_code == 202
    run_jobs(app)
    confirm = link_to(outbox.mails[0], "/confirm/")
    assert client.post(confirm).status_code == 200
    subscriber = db.session.scalar(select(Subscriber).filter_by(email="jana@example.cz"))
    one_click = app.test_client(use_cookies=False).post(
        f"/unsubscribe/{tokens.unsubscribe_token(subscriber)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert one_click.status_code == 200
    after = scrape(client)

    assert grew(before, after, "zpravodaj_signups_total", channel="page") == 1
    assert grew(before, after, "zpravodaj_signups_total", channel="api") == 2  # two lists
    assert grew(before, after, "zpravodaj_confirmations_total", channel="link") == 1
    assert grew(before, after, "zpravodaj_unsubscribes_total", channel="one-click") == 1
    assert grew(before, after, "zpravodaj_mails_total", kind="confirmation", result="sent") == 2
    assert grew(before, after, "zpravodaj_jobs_total", job="send_outgoing", result="ok") == 2


def test_a_signup_rolled_back_is_not_counted(app, client):
    before = scrape(client)
    subscriber = Subscriber(email="x@example.cz", email_key="x@example.cz", public_key="k")
    db.session.add(subscriber)
    record(subscriber, "signup", RequestInfo(ip=None, user_agent=None, channel="page"))
    db.session.rollback()
    assert grew(before, scrape(client), "zpravodaj_signups_total", channel="page") == 0


def test_a_sent_issue_counts_its_mails_smtp_times_and_batch_lag(app, client, outbox):
    app.config["BATCH_SIZE"] = 10
    add_confirmed_subscribers("zpravodaj", 25)
    before = scrape(client)
    send(make_issue())
    run_jobs(app)
    after = scrape(client)

    assert len(outbox.mails) == 25
    assert grew(before, after, "zpravodaj_mails_total", kind="issue", result="sent") == 25
    assert grew(before, after, "zpravodaj_smtp_send_seconds_count") == 25
    assert grew(before, after, "zpravodaj_smtp_send_seconds_sum") > 0
    # Three batches, one job: the first batch's job goes on with the issue's next queued
    # batches and takes their jobs off the queue (workers/delivery.py, CHAIN_BATCHES).
    assert grew(before, after, "zpravodaj_jobs_total", job="deliver_batch", result="ok") == 1
    assert grew(before, after, "zpravodaj_job_lag_seconds_count", job="deliver_batch") == 1
    assert grew(before, after, "zpravodaj_job_lag_seconds_count", job="fan_out") == 1


def test_a_refused_recipient_counts_as_failed_and_as_a_hard_bounce(app, client):
    add_confirmed_subscribers("zpravodaj", 1)
    subscriber_id = db.session.scalar(select(Subscriber.id))
    before = scrape(client)
    record_refusal("ctenar0@example.cz", "550 5.1.1 no such user", subscriber_id=subscriber_id)
    db.session.commit()
    assert grew(before, scrape(client), "zpravodaj_bounces_total", kind="hard") == 1


def test_http_requests_are_counted_by_endpoint_and_status(client):
    before = scrape(client)
    assert client.get("/subscribe").status_code == 200
    assert client.get("/confirm/not-a-token").status_code == 400
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)
    page = {"endpoint": "subscriptions.subscribe_page", "method": "GET"}
    assert grew(before, after, "zpravodaj_http_requests_total", **page, status="200") == 1
    assert grew(before, after, "zpravodaj_http_request_duration_seconds_count", **page) == 1
    confirm = {"endpoint": "subscriptions.confirm", "method": "GET", "status": "400"}
    assert grew(before, after, "zpravodaj_http_requests_total", **confirm) == 1
    # Unknown paths share one series: a scanner cannot blow up the label set.
    unmatched = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert grew(before, after, "zpravodaj_http_requests_total", **unmatched) == 1


def test_made_up_methods_share_one_series(client):
    """A client may send any token as its method: each one a series of its own would let
    a scanner grow /metrics (and the process's memory) without end."""
    before = scrape(client)
    for n in range(5):
        assert client.open("/subscribe", method=f"PROBE{n}").status_code == 405
    after = scrape(client)
    methods = {
        dict(labels)["method"]
        for name, labels in after
        if name == "zpravodaj_http_requests_total" and dict(labels)["endpoint"] == "unmatched"
    }
    assert not any(method.startswith("PROBE") for method in methods), methods
    other = {"endpoint": "unmatched", "method": "other", "status": "405"}
    assert grew(before, after, "zpravodaj_http_requests_total", **other) == 5


def test_reconciler_actions_are_counted(app, client):
    add_confirmed_subscribers("zpravodaj", 5)
    issue = make_issue()
    send(issue)
    fan_out(issue.id)
    redis_connection().flushdb()  # Redis restarted empty: the batch's job is gone
    before = scrape(client)
    done = reconcile()
    assert done["batches"] == 1
    after = scrape(client)
    assert grew(before, after, "zpravodaj_reconciler_actions_total", kind="batches") == 1


# --- facts at scrape time ---------------------------------------------------------


def test_queue_depth_oldest_job_and_issue_progress_are_read_at_scrape_time(app, client):
    app.config["BATCH_SIZE"] = 4
    add_confirmed_subscribers("zpravodaj", 10)
    issue = make_issue()
    send(issue)
    samples = scrape(client)
    assert value(samples, "zpravodaj_queue_jobs", queue="bulk", state="queued") == 1  # fan-out
    assert value(samples, "zpravodaj_queue_jobs", queue="mail", state="queued") == 0
    assert ("zpravodaj_queue_oldest_job_age_seconds", (("queue", "bulk"),)) in samples
    assert value(samples, "zpravodaj_source_up", source="redis") == 1
    assert value(samples, "zpravodaj_source_up", source="database") == 1

    fan_out(issue.id)  # three batches written and queued beside the fan-out's job, none sent
    samples = scrape(client)
    progress = {"issue": str(issue.id), "list": "zpravodaj"}
    assert value(samples, "zpravodaj_issue_deliveries", **progress, status="pending") == 10
    assert value(samples, "zpravodaj_queue_jobs", queue="bulk", state="queued") == 4

    run_jobs(app)
    samples = scrape(client)
    # A sent issue is no longer in progress; the queue is empty again.
    assert value(samples, "zpravodaj_issue_deliveries", **progress, status="sent") == 0
    assert value(samples, "zpravodaj_queue_jobs", queue="bulk", state="queued") == 0
    assert value(samples, "zpravodaj_queue_oldest_job_age_seconds", queue="bulk") == 0


def test_metrics_answer_with_redis_down_and_say_so(database_url, outbox, tmp_path):
    app = create_app(make_config(database_url, f"redis://127.0.0.1:{free_port('127.0.0.1')}/0",
                                 outbox.url))  # fmt: skip
    with app.app_context():
        db.create_all()
        samples = scrape(app.test_client())
        db.session.remove()
        if db.engine.dialect.name == "sqlite":
            db.drop_all()
    assert value(samples, "zpravodaj_source_up", source="redis") == 0
    assert value(samples, "zpravodaj_source_up", source="database") == 1


# --- who may read them ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "client_address", "status"),
    [
        (None, "127.0.0.1", 200),  # default: loopback and private networks
        (None, "10.20.30.40", 200),
        (None, "203.0.113.9", 403),
        (None, "::ffff:192.168.1.20", 200),  # IPv4 through a dual-stack socket
        (None, "::ffff:203.0.113.9", 403),
        (["203.0.113.0/24"], "203.0.113.9", 200),
        (["10.0.0.0/8"], "127.0.0.1", 403),
    ],
)
def test_metrics_are_served_only_to_allowed_networks(app, allow, client_address, status):
    if allow is not None:
        app.config["METRICS_ALLOW_NETWORKS"] = parse_networks(allow)
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": client_address})
    assert response.status_code == status


def test_a_metrics_token_is_required_when_set(app):
    app.config["METRICS_TOKEN"] = "s3cret-token"
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, headers={"Authorization": "Bearer s3cret-token"})


def test_behind_a_proxy_a_public_client_is_refused(database_url, redis_url, outbox):
    """With PROXY_FIX the address checked is the client's, not the proxy's loopback."""
    app = create_app(make_config(database_url, redis_url, outbox.url, PROXY_FIX=1))
    with app.app_context():
        db.create_all()
        client = app.test_client()
        outside = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
        inside = client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.5"})
        db.session.remove()
        if db.engine.dialect.name == "sqlite":
            db.drop_all()
    assert outside.status_code == 403
    assert inside.status_code == 200


def test_metrics_off_serves_no_page(database_url, redis_url, outbox):
    app = create_app(make_config(database_url, redis_url, outbox.url, METRICS=False))
    assert app.test_client().get("/metrics").status_code == 404
    create_app(make_config(database_url, redis_url, outbox.url))  # on again for the others


def test_a_bad_metrics_network_is_refused_at_start(database_url, redis_url, outbox):
    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        create_app(make_config(database_url, redis_url, outbox.url, METRICS_ALLOW=["intranet"]))


def test_a_spam_complaint_is_counted(app, client, outbox):
    mail = next(iter(send_issue(app, outbox, count=1).values()))
    before = scrape(client)
    process_message(bounce_bytes("arf_complaint.eml", mail))
    after = scrape(client)
    assert grew(before, after, "zpravodaj_complaints_total", result="unsubscribed") == 1
    assert grew(before, after, "zpravodaj_unsubscribes_total", channel="complaint") == 1


# --- the multiprocess directory chosen after start (zpravodaj dev, a dev instance's env file)

FOLLOW = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from service import metrics
metrics.empty_directory(metrics.Path(sys.argv[1]))
os.environ[metrics.MULTIPROC_ENV] = sys.argv[1]
metrics.follow_environment()
metrics.follow_environment()  # a second call changes nothing
metrics.mail_result("issue", "sent", 0.01)  # an unlabelled histogram and a labelled counter
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry, path=sys.argv[1])
print(generate_latest(registry).decode())
"""


FOLLOW_AFTER_A_REQUEST = """
import os, sys, time
from flask import Flask, Response, g
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from service import metrics

def count_a_request():
    with Flask("probe").test_request_context("/nowhere"):
        g.metrics_started = time.perf_counter()
        metrics._count_request(Response(status=404))

metrics.empty_directory(metrics.Path(sys.argv[1]))
count_a_request()  # counted in memory, before the directory is known
os.environ[metrics.MULTIPROC_ENV] = sys.argv[1]
metrics.follow_environment()
count_a_request()
count_a_request()
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry, path=sys.argv[1])
print(generate_latest(registry).decode())
"""


def run_counting(script: str, directory) -> dict:
    """Run `script` in a new process with the metrics directory as its argument: the
    samples it prints, by (name, sorted labels)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.stdout)
        for sample in family.samples
    }


def test_requests_counted_before_the_directory_was_followed_are_counted_into_it_after(tmp_path):
    """The web's series are remembered per kind of request (metrics._request_series): the
    ones made before the directory was followed count into memory nobody reads."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    samples = run_counting(FOLLOW_AFTER_A_REQUEST, directory)
    labels = (("endpoint", "unmatched"), ("method", "GET"), ("status", "404"))
    assert samples.get(("zpravodaj_http_requests_total", labels)) == 2, samples


def test_a_directory_set_after_import_is_counted_into_and_emptied_first(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"counts of a process that ran before")
    samples = run_counting(FOLLOW, directory)
    assert samples[("zpravodaj_mails_total", (("kind", "issue"), ("result", "sent")))] == 1
    assert samples[("zpravodaj_smtp_send_seconds_count", ())] == 1
    assert "counter_999999.db" not in {path.name for path in directory.iterdir()}
