"""/metrics: what it counts, who may read it, and the facts read at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import link_to, run_jobs


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_signup_and_its_confirmation_are_counted_by_channel(app, client, outbox):
    before = scrape(client)
    response = client.post("/subscribe", data={"email": "jana@example.cz", "list": "zpravodaj"})
    assert response.status_code == 202
    run_jobs(app)
    after_signup = scrape(client)
    assert value(after_signup, "zpravodaj_signups_total", channel="page") == (
        value(before, "zpravodaj_signups_total", channel="page") + 1
    )
    assert value(after_signup, "zpravodaj_mails_total", kind="confirmation", result="sent") == (
        value(before, "zpravodaj_mails_total", kind="confirmation", result="sent") + 1
    )
    confirm = link_to(outbox.mails[-1], "/confirm/")
    assert client.post(confirm).status_code == 200
    after = scrape(client)
    assert value(after, "zpravodaj_confirmations_total", channel="link") == (
        value(before, "zpravodaj_confirmations_total", channel="link") + 1
    )
