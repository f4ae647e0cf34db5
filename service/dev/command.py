"""`zpravodaj dev`: the whole service on one machine with one command.

Starts (or reuses, with REDIS_URL) a Redis, an SMTP catcher whose mails are
shown at /dev/outbox, one RQ worker with its scheduler, and the web app, all
wired together through the environment; seeds the demo lists. Ctrl-C or
SIGTERM stops everything it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import run_simple

from .. import consent, create_app, metrics
from ..accounts import create_user, set_password
from ..addresses import parse_address
from ..cli_language import gettext as _
from ..cli_language import lazy_gettext as _l
from ..cli_language import option
from ..clock import utcnow
from ..config import SETTINGS
from ..consent import RequestInfo
from ..extensions import db
from ..models import MailingList, Subscription, SubscriptionStatus, User
from ..paths import instance_path
from ..subscriptions import actions
from . import env_file
from .processes import spawn, stop

DEMO_LISTS = (
    (
        "zpravodaj",
        "Zpravodaj sociálního bydlení",
        "Pravidelný zpravodaj programu sociálního bydlení.",
    ),
    ("novinky", "Novinky", "Krátké zprávy o novinkách v sociálním bydlení."),
)

# Demo working groups, from the social-housing programme's text (issue 4):
# (slug, name, municipality, theme, department, meeting place, rhythm, visibility, description)
DEMO_GROUPS = (
    (
        "ostrava-udrzba",
        "Ostrava – údržba a rozvoj bytového fondu",
        "Ostrava",
        "údržba a rozvoj bytového fondu",
        "Majetkový odbor Magistrátu města Ostravy",
        "Nová radnice, Prokešovo náměstí 8, Ostrava",
        "jednou měsíčně",
        "public",
        "Tematická skupina k údržbě a rozvoji obecního bytového fondu.",
    ),
    (
        "ostrava-krizove",
        "Ostrava – krizové bydlení",
        "Ostrava",
        "krizové bydlení",
        "Odbor sociálních věcí a zdravotnictví Magistrátu města Ostravy",
        "Nová radnice, Prokešovo náměstí 8, Ostrava",
        "jednou měsíčně",
        "public",
        "Tematická skupina ke krizovému bydlení a nouzovým řešením.",
    ),
    (
        "ostrava-socialni",
        "Ostrava – sociální bydlení",
        "Ostrava",
        "sociální bydlení",
        "Odbor sociálních věcí a zdravotnictví Magistrátu města Ostravy",
        "Nová radnice, Prokešovo náměstí 8, Ostrava",
        "jednou měsíčně",
        "public",
        "Tematická skupina k sociálnímu bydlení a kazuistikám.",
    ),
    (
        "ostrava-dostupne",
        "Ostrava – dostupné bydlení",
        "Ostrava",
        "dostupné bydlení",
        "Majetkový odbor Magistrátu města Ostravy",
        "Nová radnice, Prokešovo náměstí 8, Ostrava",
        "jednou měsíčně",
        "public",
        "Tematická skupina k dostupnému bydlení.",
    ),
    (
        "ostrava-psb",
        "Pracovní skupina sociálního bydlení",
        "Ostrava",
        "naplňování akčního plánu sociálního bydlení",
        "Odbor sociálních věcí a zdravotnictví a majetkový odbor Magistrátu města Ostravy",
        "Nová radnice, Prokešovo náměstí 8, Ostrava",
        "každý druhý čtvrtek v měsíci",
        "invite",
        "Skupina naplňuje akční plán sociálního bydlení města Ostravy.",
    ),
    (
        "chomutov-eps",
        "Expertní pracovní skupina Chomutov",
        "Chomutov",
        "sociální bydlení",
        "Odbor sociálních věcí Magistrátu města Chomutova",
        "Magistrát města Chomutova, Zborovská 4602",
        "jednou za dva měsíce",
        "invite",
        "Expertní skupina k sociálnímu bydlení a kazuistikám.",
    ),
    (
        "steti-ps",
        "Pracovní skupina Štětí",
        "Štětí",
        "sociální bydlení",
        "Odbor sociálních věcí Městského úřadu Štětí",
        "Městský úřad Štětí, Mírové náměstí 163",
        "jednou za čtvrtletí",
        "public",
        "Skupina všech místních aktérů sociálního bydlení.",
    ),
    (
        "praha14-eps",
        "Expertní skupina Praha 14",
        "Praha 14",
        "sociální bydlení",
        "Odbor sociálních věcí ÚMČ Praha 14",
        "ÚMČ Praha 14, Bratří Venclíků 1073/8",
        "jednou měsíčně",
        "invite",
        "Expertní skupina s místními politiky.",
    ),
)
# (group slug, address, name, organisation, institution key, function)
DEMO_MEMBERS = (
    (
        "ostrava-psb",
        "jana.novakova@ostrava.example",
        "Jana Nováková",
        "Magistrát města Ostravy",
        "obec-socialni",
        "vedoucí oddělení sociální práce",
    ),
    (
        "ostrava-psb",
        "petr.dvorak@ostrava.example",
        "Petr Dvořák",
        "Magistrát města Ostravy",
        "obec-bytovy",
        "referent správy bytů",
    ),
    (
        "ostrava-psb",
        "marie.svobodova@charita-ostrava.example",
        "Marie Svobodová",
        "Charita Ostrava",
        "poskytovatel",
        "sociální pracovnice",
    ),
    (
        "ostrava-krizove",
        "tomas.kral@up-ostrava.example",
        "Tomáš Král",
        "Úřad práce ČR, KoP Ostrava",
        "urad-prace",
        "metodik dávek",
    ),
    (
        "ostrava-socialni",
        "lucie.horakova@ostrava.example",
        "Lucie Horáková",
        "OSPOD Ostrava-Jih",
        "ospod",
        "sociální pracovnice",
    ),
    (
        "chomutov-eps",
        "karel.benes@chomutov.example",
        "Karel Beneš",
        "Statutární město Chomutov",
        "politika",
        "radní pro sociální věci",
    ),
    (
        "chomutov-eps",
        "eva.mala@chomutov.example",
        "Eva Malá",
        "Nemocnice Chomutov",
        "zdravotnictvi",
        "zdravotně-sociální pracovnice",
    ),
    (
        "steti-ps",
        "josef.cerny@steti.example",
        "Josef Černý",
        "ZŠ Štětí",
        "skola",
        "výchovný poradce",
    ),
    (
        "steti-ps",
        "anna.vesela@steti.example",
        "Anna Veselá",
        "Město Štětí",
        "apk",
        "asistentka prevence kriminality",
    ),
    (
        "praha14-eps",
        "martin.novy@praha14.example",
        "Martin Nový",
        "ÚMČ Praha 14",
        "politika",
        "zastupitel",
    ),
    (
        "praha14-eps",
        "hana.pokorna@praha14.example",
        "Hana Pokorná",
        "Spolek Černý Most",
        "spolek",
        "předsedkyně",
    ),
)


@click.command(
    "dev",
    help=_l("Spustí celou službu na tomto počítači: web, workera, Redis a zachytávač pošty."),
)
@option("--host", default="127.0.0.1", show_default=True, help=_l("Adresa webu."))
@option("--port", default=5000, show_default=True, type=int, help=_l("Port webu."))
@option(
    "--smtp-port",
    default=0,
    type=int,
    help=_l("Port zachytávače pošty (výchozí: kterýkoli volný)."),
)
def dev_command(host: str, port: int, smtp_port: int) -> None:
    """Start what is missing, run the web app in this process, stop everything on Ctrl-C."""
    instance = instance_path()
    instance.mkdir(parents=True, exist_ok=True)
    outbox_dir = instance / "dev-outbox"
    _count_into_instance(instance)
    started: list = []

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Imported by this command alone, as the mail catcher below: Redis's client is of
    # no use to the other commands that register this one (service/cli.py).
    from .redis_server import NoRedisServer, PrivateRedis

    try:
        redis = None
        if not os.environ.get("REDIS_URL"):
            try:
                redis = PrivateRedis().start()
            except NoRedisServer as exc:
                raise click.ClickException(str(exc)) from exc
            started.append(redis.stop)
            os.environ["REDIS_URL"] = redis.url

        # Imported by this command alone: aiosmtpd is of no use to the web and worker
        # processes that register the CLI (service/cli.py).
        from .mail_catcher import MailCatcher, start_catcher

        catcher = start_catcher(MailCatcher(outbox_dir), port=smtp_port)
        started.append(catcher.stop)

        base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        _set_dev_environment(instance, base_url, catcher.port, outbox_dir)
        app = create_app({"DEV_OUTBOX_DIR": str(outbox_dir)})
        with app.app_context():
            _prepare_database(app)
            admin_email, admin_password = _dev_admin(instance)
        # Other `zpravodaj` commands of this checkout use this instance (dev/env_file.py).
        env_file.write(instance, os.environ, [*SETTINGS, metrics.MULTIPROC_ENV])
        started.append(lambda: env_file.remove(instance))

        worker = spawn([sys.executable, "-m", "service", "worker"], env=os.environ.copy())
        started.append(lambda: stop(worker, timeout=15))

        click.echo(_running(base_url, admin_email, admin_password, private_redis=bool(redis)))
        run_simple(host, port, app, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for stop_one in reversed(started):
            stop_one()
        click.echo(_("zastaveno"))


def _running(base_url: str, admin_email: str, admin_password: str, private_redis: bool) -> str:
    """Where everything is, for the developer: a line per part, its name, where, and a note."""
    rows = [
        (_("formulář"), f"{base_url}/subscribe"),
        (
            _("pošta"),
            f"{base_url}/dev/outbox   " + _("(sem dorazí každý e-mail, který služba pošle)"),
        ),
        ("admin", f"{base_url}/admin   ({admin_email} / {admin_password})"),
        ("redis", os.environ["REDIS_URL"] + (" " + _("(soukromý)") if private_redis else "")),
        ("smtp", os.environ["SMTP_URL"] + " " + _("(zachytávač)")),
    ]
    width = max(len(name) for name, _where in rows) + 2
    lines = [f"  {name.ljust(width)}{where}" for name, where in rows]
    return "\n".join(["", _("Zpravodaj běží:"), *lines, _("Ukončíte ho stiskem Ctrl-C."), ""])


def _count_into_instance(instance: Path) -> None:
    """The web (this process) and the worker with its work horses count into one
    metrics directory, so /metrics shows the mails the worker sent: `dev-metrics`
    of the instance, emptied now (no process of this instance runs yet), unless
    PROMETHEUS_MULTIPROC_DIR names another (left as it is)."""
    if not os.environ.get(metrics.MULTIPROC_ENV):
        directory = instance / "dev-metrics"
        metrics.empty_directory(directory)
        os.environ[metrics.MULTIPROC_ENV] = str(directory)
    metrics.follow_environment()


def _set_dev_environment(instance: Path, base_url: str, smtp_port: int, outbox_dir: Path) -> None:
    """The settings the web app and the worker read: the catcher for SMTP, a kept secret key,
    the local URL; what the developer set already (but SMTP and the outbox) stays."""
    os.environ.setdefault("SECRET_KEY", _dev_secret_key(instance))
    os.environ["SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    os.environ.setdefault("BASE_URL", base_url)
    os.environ.setdefault("MAIL_FROM", "Zpravodaj sociálního bydlení <zpravodaj@zpravodaj.example>")
    os.environ["DEV_OUTBOX_DIR"] = str(outbox_dir)


def _dev_secret_key(instance: Path) -> str:
    """A random key kept in the instance folder, so links survive a restart."""
    path = instance / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


DEV_ADMIN_EMAIL = "admin@zpravodaj.example"


def _dev_admin(instance: Path) -> tuple[str, str]:
    """A local admin account with a random password kept in the instance folder."""
    path = instance / "dev-admin-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    password = path.read_text().strip()
    user = db.session.scalar(select(User).filter_by(email=DEV_ADMIN_EMAIL))
    if user is None:
        create_user(DEV_ADMIN_EMAIL, password, "admin")
    else:
        set_password(user, password)
    db.session.commit()
    return DEV_ADMIN_EMAIL, password


def _prepare_database(app: Flask) -> None:
    # Imported here: Alembic is for processes that migrate, and the `zpravodaj`
    # entry point (the workers' too) imports this module (service/schema.py).
    from .. import schema

    schema.init_migrations(app)
    schema.upgrade_to_head()
    for slug, name, description in DEMO_LISTS:
        if db.session.scalar(select(MailingList).filter_by(slug=slug)) is None:
            db.session.add(MailingList(slug=slug, name=name, description=description))
    db.session.commit()
    seed_demo_groups()


def seed_demo_groups() -> None:
    """The demo working groups and a few confirmed members each; adds only what is missing."""
    fields = ("municipality", "theme", "department", "meeting_place", "meeting_rhythm")
    groups = {}
    for slug, name, *details, visibility, description in DEMO_GROUPS:
        group = db.session.scalar(select(MailingList).filter_by(slug=slug))
        if group is None:
            group = MailingList(
                slug=slug,
                name=name,
                kind="group",
                description=description,
                visibility=visibility,
                **dict(zip(fields, details, strict=True)),
            )
            db.session.add(group)
        groups[slug] = group
    db.session.flush()
    info = RequestInfo(ip=None, user_agent=None, channel="import")
    for slug, email, name, organization, institution, function in DEMO_MEMBERS:
        group = groups[slug]
        if group.kind != "group":
            continue  # a list of that slug made by hand: leave it alone
        subscriber = actions.get_or_create_subscriber(
            parse_address(email, allow_smtputf8=False), name
        )
        if actions.subscription_for(subscriber, group) is not None:
            continue
        now = utcnow()
        subscriber.subscriptions.append(
            Subscription(
                mailing_list=group,
                status=SubscriptionStatus.CONFIRMED,
                subscribed_at=now,
                confirmed_at=now,
                organization=organization,
                institution=institution,
                function=function,
            )
        )
        consent.record(
            subscriber, "import", info, mailing_list=group, detail="ukázková data (zpravodaj dev)"
        )
    db.session.commit()
