"""The admin side of bounces and erasure: history, reactivation, erasure on request."""

from __future__ import annotations

from sqlalchemy import func, select

from service import suppression
from service.bounces import recording
from service.extensions import db
from service.models import ConsentEvent, Subscriber, Subscription, Suppression
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
