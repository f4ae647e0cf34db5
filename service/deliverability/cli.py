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


@click.group("dkim", help="DKIM signing keys.")
def dkim_group() -> None:
    pass


@dkim_group.command("keygen")
@click.option(
    "--selector",
    default=None,
    help="DKIM selector (default zpravodajYYYYMM: a new one per key eases rotation).",
)
@click.option("--domain", default=None, help="Signing domain (default DKIM_DOMAIN or MAIL_FROM's).")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the private key (default instance/dkim-SELECTOR.pem).",
)
def keygen(selector: str | None, domain: str | None, out: Path | None) -> None:
    """Make a 2048-bit RSA key; print the DNS record to publish and the settings to use."""
    selector = selector or "zpravodaj" + datetime.now(UTC).strftime("%Y%m")
    domain = domain or _default_domain()
    if not domain:
        raise click.UsageError("give --domain (no DKIM_DOMAIN, and MAIL_FROM has no real domain)")
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
        raise click.ClickException(f"{path} exists; not overwriting a key (choose another --out)")
    key = generate_private_key()
    try:
        write_new_key(path, private_key_pem(key))
    except FileExistsError:
        raise click.ClickException(f"{path} exists; not overwriting a key") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:  # the same check the service runs at start-up, on what was just written
        check_dkim(
            {"DKIM_DOMAIN": domain, "DKIM_SELECTOR": selector, "DKIM_PRIVATE_KEY_PATH": str(path)}
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    click.echo(f"Wrote a 2048-bit RSA private key to {path} (mode 0600).")
    click.echo("Keep it secret; the worker processes must be able to read it.\n")
    click.echo("1. Publish this DNS TXT record (the strings are joined; most DNS")
    click.echo("   panels take the value in one piece, without the quotes):\n")
    click.echo(zone_line(selector, domain, key))
    click.echo(f"\n2. Once it resolves (dig TXT {selector}._domainkey.{domain}), set:\n")
    click.echo(f"DKIM_DOMAIN={domain}")
    click.echo(f"DKIM_SELECTOR={selector}")
    click.echo(f"DKIM_PRIVATE_KEY_PATH={path}")
    click.echo("\n3. Restart the web and worker processes and run `zpravodaj doctor`.")


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Check SMTP, DKIM, SPF, DMARC and the settings mail depends on; sends nothing.

    Exits with 1 when a check fails.
    """
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
