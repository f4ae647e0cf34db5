"""`/healthz` with its database or Redis really unreachable: 503 naming what is down.

Each app here is built from settings that point at nothing (a PostgreSQL port
where nobody listens, a SQLite file that cannot be opened, a Redis port where
nobody listens), the way an operator's typo or an outage would; nothing is
mocked. The answer must be the JSON health report, never a 500 or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import create_app
from service.dev.processes import free_port
from service.extensions import db
from tests.conftest import make_config


@pytest.fixture
def build_app(smtp_sink) -> Iterator:
    apps = []

    def build(database_url: str, redis_url: str):
        app = create_app(make_config(database_url, redis_url, smtp_sink.url))
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def nobody_listens() -> int:
    return free_port("127.0.0.1")


def unusable_sqlite(tmp_path, kind: str) -> str:
    if kind == "missing-directory":
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'zpravodaj.sqlite3'}"
    blocker = tmp_path / "a-file"  # a path through a regular file: even root cannot open it
    blocker.write_text("not a directory")
    return f"sqlite:///{blocker / 'zpravodaj.sqlite3'}"


def get_health(app, accept: str = "application/json"):
    response = app.test_client().get("/healthz", headers={"Accept": accept})
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    return response


DATABASE_DOWN = [
    pytest.param("postgresql", id="postgresql-port-closed"),
    pytest.param("missing-directory", id="sqlite-missing-directory"),
    pytest.param("through-a-file", id="sqlite-path-through-a-file"),
]


def database_down_url(kind: str, tmp_path) -> str:
    if kind == "postgresql":
        return f"postgresql://zpravodaj@127.0.0.1:{nobody_listens()}/zpravodaj"
    return unusable_sqlite(tmp_path, kind)


@pytest.mark.parametrize("kind", DATABASE_DOWN)
def test_healthz_with_the_database_down_is_503_naming_the_database(
    build_app, redis_url, tmp_path, kind
):
    app = build_app(database_down_url(kind, tmp_path), redis_url)
    response = get_health(app)
    assert response.status_code == 503
    assert response.json == {
        "status": "down",
        "checks": {"database": "down: OperationalError", "redis": "ok"},
    }
    # The failure is rolled back, not left in the session: the next check answers alike.
    assert get_health(app).json == response.json


@pytest.mark.parametrize("kind", DATABASE_DOWN)
def test_healthz_for_a_browser_is_still_the_json_report(build_app, redis_url, tmp_path, kind):
    """A browser (Accept: text/html) gets the same report, not the Czech error page."""
    app = build_app(database_down_url(kind, tmp_path), redis_url)
    response = get_health(app, accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.json["checks"]["database"] == "down: OperationalError"


def test_healthz_with_redis_down_is_503_naming_redis(build_app, tmp_path):
    app = build_app(
        f"sqlite:///{tmp_path / 'zpravodaj.sqlite3'}", f"redis://127.0.0.1:{nobody_listens()}/0"
    )
    response = get_health(app)
    assert response.status_code == 503
    assert response.json == {
        "status": "down",
        "checks": {"database": "ok", "redis": "down: ConnectionError"},
    }


def test_healthz_with_both_down_names_both(build_app, tmp_path):
    app = build_app(
        database_down_url("postgresql", tmp_path), f"redis://127.0.0.1:{nobody_listens()}/0"
    )
    response = get_health(app)
    assert response.status_code == 503
    assert response.json == {
        "status": "down",
        "checks": {"database": "down: OperationalError", "redis": "down: ConnectionError"},
    }


def test_healthz_answers_200_again_once_the_database_is_back(build_app, redis_url, tmp_path):
    """A SQLite file whose directory appears later: the next check finds it, no restart."""
    missing = tmp_path / "later"
    app = build_app(f"sqlite:///{missing / 'zpravodaj.sqlite3'}", redis_url)
    assert get_health(app).status_code == 503
    missing.mkdir()
    response = get_health(app)
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
