"""The admin side of bounces and erasure: history, reactivation, erasure on request."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service import suppression
from service.bounces import recording
from service.clock import utcnow
from service.extensions import db
from service.models import Bounce, ConsentEvent, Subscriber, Subscription, Suppression
from tests.conftest import add_confirmed_subscribers, csrf_token_of, log_in


def bounced_subscriber() -> Subscriber:
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    subscriber = db.session.get(Subscriber, subscriber_id)
    recording.suppress_bounced(subscriber, "5.1.1 User unknown")
    db.session.commit()
    return subscriber


def test_page_shows_the_bounce_and_reactivation_restores_mail(client, app, accounts):
    subscriber = bounced_subscriber()
    log_in(client, accounts.editor.email)
    page = client.get(f"/admin/subscribers/{subscriber.id}").get_data(as_text=True)
    assert "vyřazena z rozesílání jako nedoručitelná" in page
    assert "nedoručitelnost" in page  # the history step
    assert "5.1.1 User unknown" in page

    token = csrf_token_of(client, f"/admin/subscribers/{subscriber.id}")
    response = client.post(
        f"/admin/subscribers/{subscriber.id}/reactivate",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "Doručování obnoveno (1 odběr)." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(Subscription.status)) == "confirmed"
    assert not suppression.is_suppressed(subscriber.email_key)
    steps = db.session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)).all()
    assert steps[-2:] == ["bounce", "reactivate"]


def test_page_shows_the_score_the_reasons_and_the_raw_report(client, app, accounts):
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    for day, reason in ((3, "mailbox_full"), (1, "rate_limited")):
        db.session.add(
            Bounce(
                subscriber_id=subscriber_id,
                kind="soft",
                reason=reason,
                status="4.2.2",
                diagnostic="452 4.2.2 Mailbox full",
                raw="Final-Recipient: rfc822; x@example.cz\nX-Sample: <raw & whole>\n",
                fingerprint=f"{day:064d}",
                received_at=utcnow() - timedelta(days=day),
            )
        )
    db.session.commit()
    log_in(client, accounts.editor.email)
    page = client.get(f"/admin/subscribers/{subscriber_id}").get_data(as_text=True)
    assert 'data-bounce-score="2"' in page
    assert "2 dny s chybou v rozpětí 2 dnů" in page
    assert "plná schránka" in page and "příliš mnoho zpráv najednou" in page
    assert "X-Sample: &lt;raw &amp; whole&gt;" in page  # shown, escaped


def test_reactivation_needs_the_csrf_token(client, app, accounts):
    subscriber = bounced_subscriber()
    log_in(client, accounts.editor.email)
    response = client.post(f"/admin/subscribers/{subscriber.id}/reactivate")
    assert response.status_code == 400
    assert db.session.scalar(select(Subscription.status)) == "bounced"


def test_admin_erasure_asks_then_leaves_only_the_hash(client, app, accounts):
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    key = db.session.get(Subscriber, subscriber_id).email_key
    log_in(client, accounts.admin.email)
    page = client.get(f"/admin/subscribers/{subscriber_id}/erase")
    assert page.status_code == 200
    assert "Vymazat nevratně" in page.get_data(as_text=True)
    assert db.session.get(Subscriber, subscriber_id) is not None  # GET changes nothing

    token = csrf_token_of(client, f"/admin/subscribers/{subscriber_id}/erase")
    response = client.post(
        f"/admin/subscribers/{subscriber_id}/erase",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "byly vymazány" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Subscriber.id))) == 0
    assert db.session.scalar(select(func.count(ConsentEvent.id))) == 0
    assert db.session.scalar(select(Suppression.reason)) == "erased"
    assert suppression.is_suppressed(key)


def test_only_admins_erase(client, app, accounts):
    (subscriber_id,) = add_confirmed_subscribers("zpravodaj", 1)
    log_in(client, accounts.editor.email)
    assert client.get(f"/admin/subscribers/{subscriber_id}/erase").status_code == 403
    token = csrf_token_of(client, f"/admin/subscribers/{subscriber_id}")
    response = client.post(f"/admin/subscribers/{subscriber_id}/erase", data={"csrf_token": token})
    assert response.status_code == 403
    assert db.session.get(Subscriber, subscriber_id) is not None
