"""The `zpravodaj` command line (DESIGN.md §5.3): a Flask CLI group for the app.

The app's own commands are in commands.py; here are the entry point and the
commands that run before (or without) an app: `dev` and `dkim keygen`.

Every command is listed, and explained by `--help`, even where no setting is
present: the settings are checked only when a command that needs the app
runs, and a missing or bad one ends it with one line naming it.

It speaks Czech or English (cli_language.py): the app's context of a command
is forced to the environment's language as the command is looked up.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, NoReturn, TypeVar

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo

from . import __version__, create_app, create_command_app, create_worker_app, metrics
from .cli_language import lazy_gettext as _l
from .cli_language import speak_in
from .config import ConfigError
from .deliverability.cli import dkim_group
from .dev import env_file
from .dev.command import dev_command
from .paths import instance_path


class SettingsError(click.ClickException):
    """The app cannot be built from this environment: the one-line reason, no traceback."""


def _create_app(factory: Callable[[], Flask] = create_app) -> Flask:
    # A `zpravodaj dev` running in this checkout lends its settings (dev/env_file.py).
    env_file.load_if_running(instance_path())
    metrics.follow_environment()  # the dev instance's metrics directory, if any
    try:
        return factory()
    except ConfigError as exc:
        raise SettingsError(str(exc)) from exc


def _create_command_app() -> Flask:
    """The app the app's commands run in (`create_command_app`: no web pages)."""
    return _create_app(create_command_app)


F = TypeVar("F", bound=Callable[..., Any])


def with_worker_app(command: F) -> F:
    """Flask's `with_appcontext` for `zpravodaj worker`: the command runs in the worker's
    app (`create_worker_app`: the settings and URL map without the web's pages), or in
    the app already current (a test's)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        if current_app:
            return command(*args, **kwargs)
        with _create_app(create_worker_app).app_context():
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]


@functools.cache
def app_commands() -> click.Group:
    """The app's commands without building an app: what `create_command_app` adds to
    `app.cli` (built once: the command look-up asks it, and so does a refusal)."""
    # Imported here: the CLI's own commands (`worker` among them) need none of these.
    from . import commands

    group = click.Group()
    commands.register(group)
    return group


def _refusing(command: click.Command, reason: str) -> click.Command:
    """A copy of `command` (and of its subcommands) that shows its help but refuses to run.

    Group callbacks are kept: they run before a subcommand parses `--help`,
    and the app's groups do nothing in theirs.
    """
    clone = copy.copy(command)
    if isinstance(clone, click.Group):
        clone.commands = {name: _refusing(sub, reason) for name, sub in clone.commands.items()}
        return clone

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise SettingsError(reason)

    clone.callback = refuse
    return clone


def _db_commands() -> click.Group:
    """Flask-Migrate's `db` group, imported only when asked for.

    Every `zpravodaj` command, the workers' `worker` too, goes through this
    module, and only `db` needs Alembic (service/schema.py says why that matters).
    """
    from . import schema  # not at the top: see the docstring

    return schema.commands()


class ZpravodajGroup(FlaskGroup):
    """Flask's CLI group, whose help works without settings (Flask's prints a traceback),
    and whose `db` commands load Alembic only when they run.

    Commands of this distribution's other packages (the workers' `worker`) are found by
    entry point, so that `service` never imports `workers`; in a group of our own, since
    Flask's `flask.commands` would add them to every Flask app installed beside this one.
    Each is imported when asked for: `worker` imports every module of the workers, with
    Redis's client and RQ (about 9 MB), which an export or `lists show` never needs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._entry_points = {e.name: e for e in entry_points(group="zpravodaj.commands")}

    def _own_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """A command of the group itself, one of another package's loaded now if need be."""
        command = click.Group.get_command(self, ctx, name)
        if command is None and name in self._entry_points:
            command = self._entry_points.pop(name).load()
            self.add_command(command, name)
        return command

    def _settings_error(self, ctx: click.Context, commands_app: bool = True) -> str | None:
        """Why the app cannot be built (a setting missing or bad), building it.

        The group's own commands (`run`, `routes`, `shell`) never get here, being found
        first, and build the web app as they run. The app's commands and `db` run in the
        commands' app; other packages' `flask.commands` (`commands_app` false: the
        `limiter` command reads the web app's rate limiter) in the web app. Unless the
        group was given an app: a test's `ScriptInfo`, `--app`.
        """
        info = ctx.ensure_object(ScriptInfo)
        if commands_app and info.create_app is _create_app:
            info.create_app = _create_command_app
        try:
            info.load_app()
        except SettingsError as exc:
            return exc.message
        return None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        # Commands of the group itself (dev, dkim, worker, run, shell…) need no app to be
        # found, and the app's own commands come before the other packages'
        # `flask.commands` (Flask-Limiter's `limiter`, which imports rich and attrs: 2.5 MB
        # in every worker, 3.9 MB in every `zpravodaj subscribers export`); those load
        # only for a name neither has.
        command = self._own_command(ctx, name)
        if command is not None:
            return command
        apps = name == "db" or app_commands().get_command(ctx, name) is not None
        reason = self._settings_error(ctx, commands_app=apps)
        if reason is None:
            command = _db_commands() if name == "db" else self._app_command(ctx, name)
            if command is not None:
                speak_in(ctx)  # the app's context (pushed by _app_command) speaks the CLI's
                return command
            self._load_plugin_commands()
            return click.Group.get_command(self, ctx, name)
        self._load_plugin_commands()
        command = click.Group.get_command(self, ctx, name)
        if command is not None:
            return command
        command = _db_commands() if name == "db" else app_commands().get_command(ctx, name)
        return None if command is None else _refusing(command, reason)

    def _app_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Flask's look-up of a command of the app (FlaskGroup.get_command without loading
        the plug-ins first): the app's context stays pushed for the command."""
        app = ctx.ensure_object(ScriptInfo).load_app()
        if not current_app or current_app._get_current_object() is not app:  # type: ignore[attr-defined]
            ctx.with_resource(app.app_context())
        return app.cli.get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except BaseException:
            # `--help` (or a usage error) ends the run here, before click closes the
            # context: the app contexts and locales listing the commands pushed go now.
            ctx.close()
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        others = {*self._entry_points, "db"}
        if self._settings_error(ctx) is None:
            return sorted({*super().list_commands(ctx), *others})
        self._load_plugin_commands()
        names = set(click.Group.list_commands(self, ctx))
        return sorted(names | set(app_commands().list_commands(ctx)) | others)


def cli() -> ZpravodajGroup:
    """The `zpravodaj` command with every command of its own and of the app's."""
    group = ZpravodajGroup(
        name="zpravodaj",
        create_app=_create_app,
        add_version_option=False,  # Flask's would print Flask's version
        help=_l("Zpravodaj: služba zpravodajů a pošty pracovních skupin."),
    )
    click.version_option(
        __version__, "--version", prog_name="zpravodaj", message="%(prog)s %(version)s"
    )(group)
    group.add_command(dev_command)
    group.add_command(dkim_group)  # works before the app can load (no DKIM_* yet)
    return group


def main() -> None:
    cli().main(prog_name="zpravodaj")
