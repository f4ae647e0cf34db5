"""The subscribers pages: search, filters, consent history, export, CSV import and export."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from flask import current_app
from markupsafe import escape
from sqlalchemy import func, select

from service.extensions import db
from service.models import (
    ConsentEvent,
    ImportProblem,
    MailingList,
    Subscriber,
    SubscriberImport,
    Subscription,
)
from tests.conftest import (
    add_confirmed_subscribers,
    csrf_token_of,
    link_to,
    log_in,
    run_jobs,
)
from tests.waiting import wait_for

IMPORT_CSV = """email,name,organization
jana.novakova@seznam.cz,Jana Nováková,Magistrát města Ostravy
  PETR@Centrum.cz ,Petr,
jana.novakova@seznam.cz,Duplicate,
not-an-address,Nikdo,
eva@příklad.cz,Eva,Charita
"""


@pytest.fixture
def editor(client, accounts):
    log_in(client, accounts.editor.email)
    return client


def rows_of(page: str) -> list[str]:
    """The addresses listed on a subscribers page, in order."""
    return re.findall(r'<a href="/admin/subscribers/\d+">([^<]+)</a>', page)


def add_person(email: str, name: str = "", **statuses: str) -> Subscriber:
    person = Subscriber(email=email, email_key=email.casefold(), ascii_email=email, name=name)
    for slug, status in statuses.items():
        mailing_list = db.session.scalar(select(MailingList).filter_by(slug=slug))
        person.subscriptions.append(Subscription(mailing_list=mailing_list, status=status))
    db.session.add(person)
    db.session.commit()
    return person


def upload(client, body: bytes | None, *, source="Mailchimp, export 2026-11-01", slug="zpravodaj"):
    data = {
        "csrf_token": csrf_token_of(client, "/admin/"),
        "mailing_list": slug,
        "consent_source": source,
    }
    if body is not None:
        data["file"] = (io.BytesIO(body), "lide.csv")
    return client.post("/admin/subscribers/import", data=data, content_type="multipart/form-data")


def imported(client, body: bytes, **options):
    """Upload through the form, let a real RQ worker run the import, open its page."""
    response = upload(client, body, **options)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert "/admin/subscribers/imports/" in response.headers["Location"]
    run_jobs(current_app._get_current_object())
    return client.get(response.headers["Location"])


# --- access -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/subscribers",
        "/admin/subscribers/1",
        "/admin/subscribers/1/export.json",
        "/admin/subscribers/import",
        "/admin/subscribers/imports/1",
        "/admin/subscribers/imports/1/progress.json",
        "/admin/subscribers/export.csv?list=zpravodaj",
    ],
)
def test_subscribers_pages_require_sign_in(client, app, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/subscribers",
        "/admin/subscribers/1",
        "/admin/subscribers/1/export.json",
        "/admin/subscribers/import",
        "/admin/subscribers/imports/1",
        "/admin/subscribers/imports/1/progress.json",
        "/admin/subscribers/export.csv?list=ostrava-psb",
    ],
)
def test_coordinator_is_refused_the_subscribers_pages(client, accounts, path):
    add_confirmed_subscribers("ostrava-psb", 1)
    log_in(client, accounts.coordinator.email)
    response = client.get(path)
    assert response.status_code == 403
    assert "odberatel0@example.cz" not in response.get_data(as_text=True)


def test_coordinator_cannot_import(client, accounts):
    log_in(client, accounts.coordinator.email)
    response = upload(client, IMPORT_CSV.encode(), slug="ostrava-psb")
    assert response.status_code == 403
    assert db.session.scalar(select(Subscriber)) is None


def test_admin_may_open_the_subscribers_pages(client, accounts):
    log_in(client, accounts.admin.email)
    assert client.get("/admin/subscribers").status_code == 200
    assert client.get("/admin/subscribers/import").status_code == 200


# --- search, filters, pages ---------------------------------------------------


def test_search_matches_part_of_the_address_whatever_the_capitals(editor):
    add_person("Jana.Novakova@Seznam.cz", "Jana", zpravodaj="confirmed")
    add_person("petr@centrum.cz", "Petr", zpravodaj="confirmed")

    page = editor.get("/admin/subscribers?q=NOVAKOVA@seznam").get_data(as_text=True)

    assert rows_of(page) == ["Jana.Novakova@Seznam.cz"]
    assert "Nalezen 1 odběratel" in page


def test_search_matches_part_of_the_name(editor):
    add_person("jana@example.cz", "Jana Nováková", zpravodaj="confirmed")
    add_person("petr@example.cz", "Petr Novák", zpravodaj="confirmed")
    add_person("eva@example.cz", "Eva Svobodová", zpravodaj="confirmed")

    page = editor.get("/admin/subscribers", query_string={"q": "NOVÁK"}).get_data(as_text=True)

    assert sorted(rows_of(page)) == ["jana@example.cz", "petr@example.cz"]
    assert "Nalezeni 2 odběratelé" in page


def test_search_treats_wildcards_literally(editor):
    add_person("jana@example.cz", zpravodaj="confirmed")
    add_person("jan_novak@example.cz", zpravodaj="confirmed")
    for query in ("_", "%"):
        page = editor.get("/admin/subscribers", query_string={"q": query}).get_data(as_text=True)
        assert rows_of(page) == (["jan_novak@example.cz"] if query == "_" else [])


def test_filter_by_list_and_status(editor):
    add_person("a@example.cz", zpravodaj="confirmed", novinky="pending")
    add_person("b@example.cz", zpravodaj="unsubscribed")
    add_person("c@example.cz", novinky="confirmed")

    def listed(**args) -> list[str]:
        return sorted(
            rows_of(editor.get("/admin/subscribers", query_string=args).get_data(as_text=True))
        )

    assert listed(list="zpravodaj") == ["a@example.cz", "b@example.cz"]
    assert listed(list="zpravodaj", status="confirmed") == ["a@example.cz"]
    assert listed(list="novinky", status="pending") == ["a@example.cz"]
    assert listed(status="unsubscribed") == ["b@example.cz"]
    assert listed(list="ostrava-psb") == []


def test_each_row_shows_lists_with_status_and_creation_time(editor):
    add_person("a@example.cz", "Anna", zpravodaj="confirmed", novinky="bounced")
    page = editor.get("/admin/subscribers").get_data(as_text=True)
    row = re.search(
        r"<tr>\s*<td><a href=\"/admin/subscribers/\d+\">a@example.cz</a>.*?</tr>", page, re.S
    )
    assert row
    assert "Anna" in row.group(0)
    assert (
        'Zpravodaj sociálního bydlení: <span class="status status-confirmed">Potvrzeno'
        in row.group(0)
    )
    assert 'Novinky: <span class="status status-bounced">Nedoručitelné' in row.group(0)
    assert re.search(
        r"<time datetime=\"[\d\-T:.]+Z\">\d+\. \d+\. \d{4} \d\d:\d\d</time>", row.group(0)
    )


def test_results_come_fifty_to_a_page_with_page_links(editor):
    add_confirmed_subscribers("zpravodaj", 120)

    first = editor.get("/admin/subscribers").get_data(as_text=True)
    third = editor.get("/admin/subscribers?page=3").get_data(as_text=True)

    assert len(rows_of(first)) == 50
    assert len(rows_of(third)) == 20
    assert "Nalezeno 120 odběratelů" in first
    assert 'href="/admin/subscribers?page=2"' in first
    assert 'href="/admin/subscribers?page=3"' in first
    assert 'aria-current="page">3<' in third
    everyone = (
        set(rows_of(first))
        | set(rows_of(editor.get("/admin/subscribers?page=2").get_data(as_text=True)))
        | set(rows_of(third))
    )
    assert len(everyone) == 120


def test_page_links_keep_the_filters(editor):
    add_confirmed_subscribers("zpravodaj", 60)
    page = editor.get("/admin/subscribers?q=odberatel&list=zpravodaj&status=confirmed").get_data(
        as_text=True
    )
    assert (
        'href="/admin/subscribers?q=odberatel&amp;list=zpravodaj&amp;status=confirmed&amp;page=2"'
        in page
    )


@pytest.mark.parametrize(
    "query",
    [
        "page=abc",
        "page=-1",
        "page=0",
        "page=99999999999999999999",
        "page=%D9%A3",  # an Arabic-Indic digit: isdigit() but not a page number
        "status=%3Cscript%3E",
        "list=..%2F..%2Fetc",
        "list=zpravodaj&list=novinky",
        "q=" + "x" * 5000,
        "q=%27%3B+DROP+TABLE+subscriber%3B--",
        "q=%F0%9F%98%80",
    ],
)
def test_hostile_query_parameters_never_fail(editor, query):
    add_confirmed_subscribers("zpravodaj", 3)
    response = editor.get("/admin/subscribers?" + query)
    assert response.status_code == 200
    assert "Odběratelé" in response.get_data(as_text=True)


def test_unknown_filters_are_explained_in_czech(editor):
    page = editor.get("/admin/subscribers?status=smazano&page=abc&list=nic").get_data(as_text=True)
    assert "Neznámý stav odběru" in page
    assert "Neplatné číslo stránky" in page
    assert "Seznam s tímto označením neexistuje" in page


def test_a_page_beyond_the_last_shows_the_last(editor):
    add_confirmed_subscribers("zpravodaj", 55)
    page = editor.get("/admin/subscribers?page=9").get_data(as_text=True)
    assert len(rows_of(page)) == 5
    assert "stránka 2 z 2" in page


# --- one person ---------------------------------------------------------------


def test_consent_history_shows_every_step_newest_first(client, app, accounts, outbox):
    response = client.post(
        "/subscribe",
        data={"email": "jana.novakova@seznam.cz", "list": ["zpravodaj"], "list_choice": "1"},
        headers={"User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 202
    run_jobs(app)
    confirm = link_to(outbox.mails[0], "/confirm/")
    assert client.post(confirm, environ_base={"REMOTE_ADDR": "192.0.2.11"}).status_code == 200
    person = db.session.scalar(select(Subscriber))
    signup = db.session.scalar(select(ConsentEvent).filter_by(action="signup"))
    log_in(client, accounts.editor.email)

    page = client.get(f"/admin/subscribers/{person.id}").get_data(as_text=True)

    history = page[page.index("Historie souhlasu") :]
    assert history.index("potvrzení") < history.index("přihlášení")  # newest first
    assert "192.0.2.10" in history and "192.0.2.11" in history
    assert "Mozilla/5.0 (test)" in history
    assert "formulář na stránce" in history
    assert f"verze {signup.consent_text.version}" in history
    assert signup.message_id and str(escape(signup.message_id)) in history
    assert "Potvrzeno" in page
    assert re.search(r"\d+\. \d+\. \d{4} \d\d:\d\d", history)
    assert f'href="/admin/subscribers/{person.id}/export.json"' in page


def test_consent_history_times_are_shown_in_prague(editor):
    from datetime import datetime

    person = add_person("jana@example.cz", zpravodaj="confirmed")
    db.session.add(
        ConsentEvent(
            subscriber=person,
            action="import",
            channel="import",
            occurred_at=datetime(2026, 1, 5, 23, 30),
            detail="Mailchimp",
        )
    )
    db.session.commit()
    page = editor.get(f"/admin/subscribers/{person.id}").get_data(as_text=True)
    assert "6. 1. 2026 00:30" in page
    assert "Mailchimp" in page


def test_unknown_subscriber_is_404(editor):
    response = editor.get("/admin/subscribers/999999")
    assert response.status_code == 404
    assert "Stránka nebyla nalezena." in response.get_data(as_text=True)
    assert editor.get("/admin/subscribers/999999/export.json").status_code == 404


def test_data_export_downloads_everything_held_as_json(editor):
    person = add_person("jana@example.cz", "Jana", zpravodaj="confirmed")
    db.session.add(
        ConsentEvent(subscriber=person, action="import", channel="import", detail="Mailchimp")
    )
    db.session.commit()

    response = editor.get(f"/admin/subscribers/{person.id}/export.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.data)
    assert data["email"] == "jana@example.cz"
    assert data["name"] == "Jana"
    assert [s["list"] for s in data["subscriptions"]] == ["zpravodaj"]
    assert data["consent_events"][0]["detail"] == "Mailchimp"


# --- CSV import ---------------------------------------------------------------


def test_import_through_the_form_confirms_people_and_reports_bad_rows(editor, outbox):
    response = imported(editor, IMPORT_CSV.encode())

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Importováni 3 odběratelé" in page
    assert "0 adres už bylo přihlášeno" in page
    assert "2 řádky přeskočeny" in page
    assert "<tr><td>4</td><td>opakuje adresu z řádku 2</td></tr>" in page
    assert "<tr><td>5</td><td>neplatná adresa &#39;not-an-address&#39;</td></tr>" in page
    rows = db.session.execute(
        select(Subscriber.email, Subscription.status).join(Subscription)
    ).all()
    assert sorted(rows) == [
        ("PETR@centrum.cz", "confirmed"),
        ("eva@příklad.cz", "confirmed"),
        ("jana.novakova@seznam.cz", "confirmed"),
    ]
    event = db.session.scalar(select(ConsentEvent))
    assert (event.action, event.channel, event.detail) == (
        "import",
        "import",
        "Mailchimp, export 2026-11-01",
    )
    assert outbox.mails == []


def test_importing_again_reports_people_already_subscribed(editor):
    imported(editor, IMPORT_CSV.encode())
    page = imported(editor, IMPORT_CSV.encode()).get_data(as_text=True)
    assert "Importováno 0 odběratelů" in page
    assert "3 adresy už byly přihlášeny" in page


def test_import_accepts_excel_s_byte_order_mark(editor):
    response = imported(editor, "\ufeffemail,name\njana@example.cz,Jana\n".encode())
    assert response.status_code == 200
    assert "Importován 1 odběratel" in response.get_data(as_text=True)


def test_import_does_not_re_add_someone_who_left(editor):
    add_person("jana@example.cz", zpravodaj="unsubscribed")
    page = imported(editor, b"email\njana@example.cz\n").get_data(as_text=True)
    assert "adresa se z tohoto seznamu odhlásila; znovu nepřidáno" in page
    assert db.session.scalar(select(Subscription.status)) == "unsubscribed"


def test_import_without_a_csrf_token_is_refused(editor):
    response = editor.post(
        "/admin/subscribers/import",
        data={
            "mailing_list": "zpravodaj",
            "consent_source": "Mailchimp",
            "file": (io.BytesIO(IMPORT_CSV.encode()), "lide.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert db.session.scalar(select(Subscriber)) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Vyberte soubor CSV k importu."),
        (b"", "Soubor je prázdný."),
        (b"  \n\n", "Soubor je prázdný."),
        ("email,name\njana@example.cz,Jana Nováková\n".encode("cp1250"), "není v kódování UTF-8"),
        (b"\xff\xfee\x00m\x00", "není v kódování UTF-8"),
        (b"adresa,jmeno\njana@example.cz,Jana\n", "chybí sloupec „email“"),
        (b"email;name\njana@example.cz;Jana\n", "oddělené středníkem"),
    ],
)
def test_unusable_uploads_get_a_czech_error_and_422(editor, body, message):
    response = upload(editor, body)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber)) is None


def test_import_needs_a_consent_source(editor):
    response = upload(editor, IMPORT_CSV.encode(), source="   ")
    assert response.status_code == 422
    assert "Uveďte, kde a kdy lidé se zasíláním souhlasili." in response.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber)) is None


def test_import_into_an_unknown_list_is_refused(editor):
    response = upload(editor, IMPORT_CSV.encode(), slug="neexistuje")
    assert response.status_code == 422
    assert "Vyberte seznam" in response.get_data(as_text=True)


def test_import_of_a_malformed_csv_is_not_a_500(editor):
    huge_field = b'email,name\n"' + b"x" * 200_000 + b'"\n'
    response = upload(editor, huge_field)
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_an_upload_is_queued_and_its_page_shows_the_progress_until_the_worker_is_done(editor, app):
    response = upload(editor, IMPORT_CSV.encode())
    page = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert "Průběh importu" in page
    assert "čeká na spuštění" in page
    assert "admin-imports.js" in page
    assert db.session.scalar(select(Subscriber)) is None  # nothing yet: the worker imports

    record = db.session.scalar(select(SubscriberImport))
    url = f"/admin/subscribers/imports/{record.id}/progress.json"
    queued = editor.get(url).get_json()
    assert (queued["status"], queued["percent"], queued["total_rows"]) == ("queued", 0.0, 5)
    assert queued["finished"] is False
    db.session.commit()  # the test's session served the request: end its read

    run_jobs(app)

    done = editor.get(url).get_json()
    assert (done["status"], done["percent"], done["rows_done"]) == ("done", 100.0, 5)
    assert done["counts"] == {"imported": 3, "unchanged": 0, "skipped": 2}
    assert done["texts"]["rows"] == "5 z 5"
    db.session.expire_all()
    record = db.session.get(SubscriberImport, record.id)
    assert record.data is None  # the file is personal data: gone once imported
    assert record.created_by_id is not None
    listing = editor.get("/admin/subscribers/import").get_data(as_text=True)
    assert "Poslední importy" in listing and "lide.csv" in listing and "dokončen" in listing


def test_a_second_job_for_an_import_finds_it_held_and_stops(editor, app):
    from service.subscriptions import import_jobs
    from workers.imports import run_import

    upload(editor, IMPORT_CSV.encode())
    record = db.session.scalar(select(SubscriberImport))
    assert import_jobs.claim(record.id, "another-worker")  # a live worker holds it
    assert run_import(record.id) == "skipped"
    run_jobs(app)  # its own queued job: held by another, fresh lease
    db.session.expire_all()
    assert db.session.get(SubscriberImport, record.id).status == "running"
    assert db.session.scalar(select(Subscriber)) is None


def test_an_import_whose_worker_died_is_resumed_after_its_last_chunk(editor, app, monkeypatch):
    """Killed after the first chunk committed: the reconciler's fresh job goes on from
    there, and the report is whole (line 4 repeats line 2, from the first chunk)."""
    from service.subscriptions import import_jobs, importing
    from workers.reconcile import reconcile_imports

    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    upload(editor, IMPORT_CSV.encode())
    record = db.session.scalar(select(SubscriberImport))
    original = import_jobs._progress
    chunks = []

    def dies_after_one_chunk(import_id, job_id, chunk):
        if chunks:
            raise SystemExit("killed")  # the work horse dies mid-import, nothing more lands
        chunks.append(chunk.rows)
        original(import_id, job_id, chunk)

    monkeypatch.setattr(import_jobs, "_progress", dies_after_one_chunk)
    with pytest.raises(SystemExit):
        import_jobs.claim(record.id, record.job_id)
        import_jobs.run(record.id, record.job_id)
    db.session.rollback()
    monkeypatch.setattr(import_jobs, "_progress", original)
    db.session.expire_all()
    half = db.session.get(SubscriberImport, record.id)
    assert (half.status, half.rows_done, half.imported) == ("running", 2, 2)

    assert reconcile_imports() == 0  # its lease is fresh: the worker may be alive
    half.heartbeat -= timedelta(hours=1)
    db.session.commit()
    redis_flushed = app.extensions["redis"]
    redis_flushed.flushdb()
    assert reconcile_imports() == 1
    run_jobs(app)

    db.session.expire_all()
    done = db.session.get(SubscriberImport, record.id)
    assert (done.status, done.rows_done, done.imported, done.skipped) == ("done", 5, 3, 2)
    problems = db.session.execute(select(ImportProblem.line, ImportProblem.problem)).all()
    assert sorted(problems) == [
        (4, "opakuje adresu z řádku 2"),
        (5, "neplatná adresa 'not-an-address'"),
    ]
    assert db.session.scalar(select(func.count()).select_from(ConsentEvent)) == 3


def test_an_import_s_lease_is_renewed_while_a_chunk_takes_long(editor, app, monkeypatch):
    """A chunk that takes longer than the lease must not make a live import look
    abandoned to the reconciler (which would start a second job on it): a lease
    keeper thread moves the heartbeat on meanwhile (before: only each chunk's commit
    did, so a slow chunk let the heartbeat go stale)."""
    from service.subscriptions import import_jobs
    from workers.imports import run_import

    app.config["BATCH_LEASE_SECONDS"] = 3  # renewed every 0.5 s
    upload(editor, IMPORT_CSV.encode())
    record = db.session.scalar(select(SubscriberImport))
    import_id = record.id
    db.session.commit()
    original = import_jobs.import_csv
    renewals = []

    def heartbeat() -> object:
        with db.engine.connect() as connection:
            return connection.scalar(
                select(SubscriberImport.heartbeat).where(SubscriberImport.id == import_id)
            )

    def slow_chunk(*args, **kwargs):
        claimed = heartbeat()  # set by the claim, just before
        renewals.append(wait_for(lambda: heartbeat() != claimed, timeout=30))
        return original(*args, **kwargs)

    monkeypatch.setattr(import_jobs, "import_csv", slow_chunk)
    assert run_import(import_id) == "done"
    assert renewals == [True], "the heartbeat stood still while the chunk worked"


def test_an_upload_whose_job_redis_lost_is_queued_again(editor, app):
    from service.clock import utcnow
    from workers.reconcile import reconcile_imports

    upload(editor, b"email\njana@example.cz\n")
    record = db.session.scalar(select(SubscriberImport))
    record.created_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert reconcile_imports() == 0  # its job is still queued
    app.extensions["redis"].flushdb()
    assert reconcile_imports() == 1
    run_jobs(app)
    db.session.expire_all()
    assert db.session.get(SubscriberImport, record.id).imported == 1


def test_an_unknown_import_is_404(editor):
    assert editor.get("/admin/subscribers/imports/999").status_code == 404
    assert editor.get("/admin/subscribers/imports/999/progress.json").status_code == 404


def test_many_skipped_lines_are_shown_a_page_at_a_time(editor, app, monkeypatch):
    from service.admin import subscribers

    monkeypatch.setattr(subscribers, "PROBLEMS_PER_PAGE", 2)
    body = "email\n" + "".join(f"spatne{i}\n" for i in range(5))
    page = imported(editor, body.encode()).get_data(as_text=True)
    assert "5 řádků přeskočeno" in page
    assert "spatne0" in page and "spatne2" not in page
    record = db.session.scalar(select(SubscriberImport))
    last = editor.get(f"/admin/subscribers/imports/{record.id}?page=3").get_data(as_text=True)
    assert "spatne4" in last and "spatne0" not in last
    assert editor.get(f"/admin/subscribers/imports/{record.id}?page=x").status_code == 200


# --- CSV export ---------------------------------------------------------------


def test_export_downloads_the_same_csv_as_the_command_line(editor, runner):
    add_confirmed_subscribers("zpravodaj", 3)
    add_person("odesel@example.cz", "Odešel", zpravodaj="unsubscribed")

    response = editor.get("/admin/subscribers/export.csv?list=zpravodaj")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="zpravodaj.csv"'
    cli = runner.invoke(args=["subscribers", "export", "--list", "zpravodaj"])
    assert response.get_data(as_text=True) == cli.output
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 4
    assert {"email", "name", "status", "subscribed_at", "confirmed_at"} <= set(rows[0])
    assert {row["status"] for row in rows} == {"confirmed", "unsubscribed"}


def test_export_of_an_unknown_list_is_404(editor):
    assert editor.get("/admin/subscribers/export.csv?list=neexistuje").status_code == 404


def test_export_without_a_list_goes_back_to_the_subscribers(editor):
    response = editor.get("/admin/subscribers/export.csv")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/subscribers")
