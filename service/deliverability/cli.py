"""`zpravodaj dkim keygen` and `zpravodaj doctor`.

`dkim keygen` needs no app: it is what an operator runs before DKIM_* are set,
and a half-set DKIM configuration would stop the app from loading. So it is
added to the top-level group (service/cli.py) as well as to the app's (service/commands.py).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ..cli_language import gettext as _
from ..cli_language import lazy_gettext as _l
from ..cli_language import option
from ..config import ConfigError, check_dkim, check_dkim_selector
from ..paths import instance_path
from .dkim import (
    DkimKeyError,
    ascii_domain,
    generate_private_key,
    private_key_pem,
    zone_line,
)
from .doctor import PLACEHOLDER_DOMAINS, domain_of, failed, run_checks


def _default_domain() -> str | None:
    domain = os.environ.get("DKIM_DOMAIN") or domain_of(os.environ.get("MAIL_FROM") or "")
    return domain if domain and domain not in PLACEHOLDER_DOMAINS else None


def _default_out(selector: str) -> Path:
    return instance_path() / f"dkim-{selector}.pem"


def write_new_key(path: Path, pem: bytes) -> None:
    """Create `path` readable by its owner only; never replace an existing key.

    O_EXCL, not a check-then-write: overwriting the key whose public half is
    in DNS would break every signature until DNS is changed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
        os.write(descriptor, pem)
    finally:
        os.close(descriptor)


@click.group("dkim", help=_l("Podpisové klíče DKIM."))
def dkim_group() -> None:
    pass


@dkim_group.command(
    "keygen",
    help=_l(
        "Vytvoří 2048bitový klíč RSA; vypíše záznam DNS ke zveřejnění a nastavení, která použít."
    ),
)
@option(
    "--selector",
    default=None,
    help=_l("Selektor DKIM (výchozí zpravodajRRRRMM: nový pro každý klíč usnadní výměnu)."),
)
@option(
    "--domain",
    default=None,
    help=_l("Podpisová doména (výchozí DKIM_DOMAIN nebo doména MAIL_FROM)."),
)
@option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=_l("Kam zapsat soukromý klíč (výchozí instance/dkim-SELECTOR.pem)."),
)
def keygen(selector: str | None, domain: str | None, out: Path | None) -> None:
    """A new key, written before anything is printed; the DNS record and the settings after."""
    selector = selector or "zpravodaj" + datetime.now(UTC).strftime("%Y%m")
    domain = domain or _default_domain()
    if not domain:
        raise click.UsageError(
            _("zadejte --domain (DKIM_DOMAIN chybí a MAIL_FROM nemá skutečnou doménu)")
        )
    try:
        domain = ascii_domain(domain)
    except DkimKeyError as exc:
        raise click.BadParameter(str(exc), param_hint="--domain") from exc
    try:  # before anything is written: a refused selector leaves no stray key behind
        check_dkim_selector(selector)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--selector") from exc
    path = (out or _default_out(selector)).absolute()
    if path.exists():
        raise click.ClickException(
            _("%(path)s už existuje; klíč nepřepíšu (zvolte jiné --out)", path=path)
        )
    key = generate_private_key()
    try:
        write_new_key(path, private_key_pem(key))
    except FileExistsError:
        raise click.ClickException(_("%(path)s už existuje; klíč nepřepíšu", path=path)) from None
    except OSError as exc:
        raise click.ClickException(
            _("%(path)s nelze zapsat: %(error)s", path=path, error=exc.strerror or exc)
        ) from exc
    try:  # the same check the service runs at start-up, on what was just written
        check_dkim(
            {"DKIM_DOMAIN": domain, "DKIM_SELECTOR": selector, "DKIM_PRIVATE_KEY_PATH": str(path)}
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    click.echo(_("Soukromý 2048bitový klíč RSA je zapsán v %(path)s (práva 0600).", path=path))
    click.echo(_("Uchovejte ho v tajnosti; procesy workerů ho musí umět přečíst."))
    click.echo()
    click.echo(
        _(
            "1. Zveřejněte tento záznam DNS TXT (jeho řetězce se spojí; většina správců DNS\n"
            "   bere hodnotu vcelku, bez uvozovek):"
        )
    )
    click.echo()
    click.echo(zone_line(selector, domain, key))
    click.echo()
    record = f"{selector}._domainkey.{domain}"
    click.echo(_("2. Až ho DNS vrací (dig TXT %(record)s), nastavte:", record=record))
    click.echo()
    click.echo(f"DKIM_DOMAIN={domain}")
    click.echo(f"DKIM_SELECTOR={selector}")
    click.echo(f"DKIM_PRIVATE_KEY_PATH={path}")
    click.echo()
    click.echo(_("3. Restartujte webové procesy i workery a spusťte `zpravodaj doctor`."))


@click.command(
    "doctor",
    help=_l(
        "Zkontroluje SMTP, DKIM, SPF, DMARC a nastavení, na kterých pošta závisí; nic "
        "neposílá.\n\nKončí kódem 1, když některá kontrola selže."
    ),
)
@with_appcontext
def doctor_command() -> None:
    """Run every check, a line each (status and name are fixed words, for grep), then a count."""
    results = run_checks(current_app.config)
    for result in results:
        click.echo(result.line())
    counts = {status: sum(r.status == status for r in results) for status in (
        "ok", "warn", "fail", "skip")}  # fmt: skip
    click.echo(", ".join(f"{n} {status}" for status, n in counts.items()))
    if failed(results):
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add the commands to `group` (the app's CLI)."""
    group.add_command(dkim_group)
    group.add_command(doctor_command)
