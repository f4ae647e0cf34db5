"""The worker's app (`create_worker_app`, issue 14): the web app's URL map and mail
templates without the web's pages, so that a worker's mails are the web app's."""

from __future__ import annotations

import pprint

import pytest
from flask import render_template
from jinja2 import meta

from service import create_app, create_worker_app
from service.links import external_url
from service.paths import resource_dir
from service.url_rules import rules_of


def test_the_worker_app_builds_urls_from_the_web_apps_rules(app_config):
    """A route added, renamed or moved fails here until service/url_rules.py has it."""
    web = create_app({**app_config, "METRICS": True, "DEV_OUTBOX_DIR": None})
    worker = create_worker_app(app_config)
    expected = rules_of(web)
    assert by_endpoint(rules_of(worker)) == by_endpoint(expected), (
        "service/url_rules.py differs from the web app's routes; its RULES should be:\n"
        + pprint.pformat(expected, width=100)
    )
    # Only for building links: a worker serves no page.
    assert all(r.build_only for r in worker.url_map.iter_rules() if r.endpoint != "static")
    with web.app_context():
        web_url = external_url("subscriptions.unsubscribe", token="t0ken")
    with worker.app_context():
        assert external_url("subscriptions.unsubscribe", token="t0ken") == web_url
        assert web_url == f"{app_config['BASE_URL']}/unsubscribe/t0ken"


def by_endpoint(rules: tuple[tuple, ...]) -> dict[str, list[tuple]]:
    """Each endpoint's rules in their order: what building a link looks at. The order
    across endpoints is left out: it follows which view modules a process imported
    first (a test importing `service.admin.issues` before the admin's routes put its
    rules first, and this test failed in a full run), and never changes a link."""
    endpoints: dict[str, list[tuple]] = {}
    for rule in rules:
        endpoints.setdefault(rule[1], []).append(rule)
    return endpoints


class Anything(str):
    """A template value of any shape: each attribute, item or call is another one."""

    def __getattr__(self, name: str) -> Anything:
        return Anything(f"{self}.{name}")

    def __getitem__(self, key: object) -> Anything:  # type: ignore[override]
        return Anything(f"{self}[{key}]")

    def __call__(self, *args: object, **kwargs: object) -> Anything:
        return Anything(f"{self}()")

    # A count (ngettext's plural rules, %d): two.
    def __round__(self, ndigits: int | None = None) -> int:
        return 2

    def __int__(self) -> int:
        return 2

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        return other <= 2  # type: ignore[operator]

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        return other >= 2  # type: ignore[operator]


# gettext warns that a count is not an int (it is an Anything that rounds to 2).
@pytest.mark.filterwarnings("ignore:Plural value must be an integer")
def test_every_mail_template_renders_the_same_in_the_worker_app(app_config):
    """Its filters and globals (the group's name declined, the privacy link…) are the web app's."""
    web = create_app(app_config)
    worker = create_worker_app(app_config)
    templates = sorted(
        f"email/{path.name}"
        for path in (resource_dir("templates") / "email").iterdir()
        if not path.name.startswith("_")
    )
    assert len(templates) > 10
    for template in templates:
        source = web.jinja_env.loader.get_source(web.jinja_env, template)[0]
        names = meta.find_undeclared_variables(web.jinja_env.parse(source))
        context = {name: Anything(name) for name in names - set(web.jinja_env.globals)}
        with web.app_context():
            expected = render_template(template, **context)
        with worker.app_context():
            assert render_template(template, **context) == expected, template
