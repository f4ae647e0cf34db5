"""`zpravodaj lists create/update/show` for working groups."""

from __future__ import annotations

from sqlalchemy import select

from service.extensions import db
from service.models import MailingList

CREATE_STETI = [
    "lists",
    "create",
    "steti-ps",
    "--name",
    "Pracovní skupina Štětí",
    "--kind",
    "group",
    "--municipality",
    "Štětí",
    "--theme",
    "sociální bydlení",
    "--department",
    "Odbor sociálních věcí",
    "--meeting-place",
    "Městský úřad Štětí, zasedací místnost",
    "--meeting-rhythm",
    "jednou za dva měsíce",
    "--visibility",
    "invite",
    "--description",
    "Všichni místní aktéři.",
]


def group(slug: str) -> MailingList:
    db.session.expire_all()
    return db.session.scalar(select(MailingList).filter_by(slug=slug))


def test_create_group_with_its_details(runner, app):
    result = runner.invoke(args=CREATE_STETI)
    assert result.exit_code == 0, result.output
    created = group("steti-ps")
    assert (created.kind, created.name, created.municipality) == (
        "group",
        "Pracovní skupina Štětí",
        "Štětí",
    )
    assert created.meeting_place == "Městský úřad Štětí, zasedací místnost"
    assert created.meeting_rhythm == "jednou za dva měsíce"
    assert created.department == "Odbor sociálních věcí"
    assert created.visibility == "invite"
    assert created.description == "Všichni místní aktéři."


def test_update_changes_only_what_is_given(runner, app):
    runner.invoke(args=CREATE_STETI)
    result = runner.invoke(
        args=[
            "lists",
            "update",
            "steti-ps",
            "--meeting-rhythm",
            "každé první úterý v měsíci",
            "--visibility",
            "public",
        ]
    )
    assert result.exit_code == 0, result.output
    updated = group("steti-ps")
    assert updated.meeting_rhythm == "každé první úterý v měsíci"
    assert updated.visibility == "public"
    assert updated.municipality == "Štětí"  # untouched
    assert updated.name == "Pracovní skupina Štětí"


def test_show_prints_group_details_and_coordinators(runner, app, accounts):
    runner.invoke(args=CREATE_STETI)
    result = runner.invoke(args=["lists", "show"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("steti-ps\tgroup\tPracovní skupina Štětí")
    assert "  obec: Štětí" in lines[at + 1 :]
    assert "  jak často se schází: jednou za dva měsíce" in result.output
    assert "  viditelnost: invite" in result.output
    assert "zpravodaj\tnewsletter\tZpravodaj sociálního bydlení" in lines
    one = runner.invoke(args=["lists", "show", "ostrava-psb"])
    assert one.output.splitlines()[0] == "ostrava-psb\tgroup\tPracovní skupina sociálního bydlení"
    assert "  koordinátoři: koordinator@ostrava.example" in one.output


def test_group_options_are_refused_for_newsletters(runner, app):
    result = runner.invoke(
        args=["lists", "create", "info", "--name", "Info", "--municipality", "Ostrava"]
    )
    assert result.exit_code == 2
    assert "--municipality: jen pro pracovní skupiny" in result.output
    assert group("info") is None
    update = runner.invoke(args=["lists", "update", "zpravodaj", "--theme", "x"])
    assert update.exit_code == 2
    assert "Traceback" not in update.output


def test_errors_are_clear_and_exit_non_zero(runner, app):
    missing = runner.invoke(args=["lists", "update", "neni-tu", "--theme", "x"])
    assert missing.exit_code == 1
    assert "Seznam 'neni-tu' neexistuje." in missing.output
    nothing = runner.invoke(args=["lists", "update", "ostrava-psb"])
    assert nothing.exit_code == 2
    assert "Není co měnit" in nothing.output
    bad_visibility = runner.invoke(args=["lists", "update", "ostrava-psb", "--visibility", "x"])
    assert bad_visibility.exit_code == 2
    too_long = runner.invoke(args=["lists", "update", "ostrava-psb", "--municipality", "O" * 121])
    assert too_long.exit_code == 1
    assert "Obec: příliš dlouhý text (nejvýše 120 znaků)." in too_long.output
    control = runner.invoke(args=["lists", "update", "ostrava-psb", "--theme", "a\x07b"])
    assert control.exit_code == 1
    assert "nepovolené znaky" in control.output
    empty_name = runner.invoke(args=["lists", "update", "ostrava-psb", "--name", " "])
    assert empty_name.exit_code == 1
    assert "Název nesmí být prázdný." in empty_name.output
    for result in (missing, nothing, bad_visibility, too_long, control, empty_name):
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert group("ostrava-psb").municipality == ""


GROUP_CSV = """email,name,organization,institution,function
jana@ostrava.example,Jana Nováková,Magistrát města Ostravy,obec-socialni,vedoucí oddělení
petr@charita.example,Petr Dvořák,Charita Ostrava,Poskytovatel sociálních služeb,sociální pracovník
karel@ostrava.example,Karel,,kosmonaut,
eva@ostrava.example,Eva,,,
"""


def test_group_import_stores_member_details_and_reports_bad_institutions(runner, app, tmp_path):
    from service.models import Subscriber, Subscription

    path = tmp_path / "members.csv"
    path.write_text(GROUP_CSV, encoding="utf-8")
    result = runner.invoke(
        args=[
            "subscribers",
            "import",
            str(path),
            "--list",
            "ostrava-psb",
            "--consent-source",
            "prezenční listina 2026-10",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "řádek 4: neznámý typ instituce 'kosmonaut'" in result.output
    assert "importováno 3, už přihlášeno 0, přeskočeno 1" in result.output
    rows = db.session.execute(
        select(
            Subscriber.email,
            Subscription.status,
            Subscription.organization,
            Subscription.institution,
            Subscription.function,
        )
        .join(Subscription)
        .order_by(Subscriber.email)
    ).all()
    assert rows == [
        ("eva@ostrava.example", "confirmed", "", "", ""),
        (
            "jana@ostrava.example",
            "confirmed",
            "Magistrát města Ostravy",
            "obec-socialni",
            "vedoucí oddělení",
        ),
        (
            "petr@charita.example",
            "confirmed",
            "Charita Ostrava",
            "poskytovatel",
            "sociální pracovník",
        ),
    ]


def test_newsletter_import_ignores_group_columns(runner, app, tmp_path):
    from service.models import Subscription

    path = tmp_path / "people.csv"
    path.write_text(GROUP_CSV, encoding="utf-8")
    result = runner.invoke(
        args=["subscribers", "import", str(path), "--list", "zpravodaj", "--consent-source", "x"]
    )
    assert "importováno 4, už přihlášeno 0, přeskočeno 0" in result.output
    assert {s.institution for s in db.session.scalars(select(Subscription))} == {""}


def test_demo_groups_are_seeded_once_with_confirmed_members(app):
    from service.dev.command import DEMO_GROUPS, DEMO_MEMBERS, seed_demo_groups
    from service.models import Subscription

    seed_demo_groups()
    seed_demo_groups()
    groups = db.session.scalars(select(MailingList).filter_by(kind="group")).all()
    assert {g.slug for g in groups} == {slug for slug, *_ in DEMO_GROUPS}
    steti = group("steti-ps")
    assert (steti.municipality, steti.meeting_rhythm) == ("Štětí", "jednou za čtvrtletí")
    assert group("ostrava-psb").name == "Pracovní skupina sociálního bydlení"
    members = db.session.scalars(select(Subscription)).all()
    assert len(members) == len(DEMO_MEMBERS)
    assert {m.status for m in members} == {"confirmed"}
    assert len({m.institution for m in members}) >= 8
