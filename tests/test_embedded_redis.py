"""The embedded Redis-protocol server behind `manage.py demo` (luci_web/embedded_redis.py), in both flavours: Debian's
redis-server on a private unix socket and fakeredis on 127.0.0.1. Each must answer PING, carry a channels_redis
group_send from one layer instance to another (daphne and the worker are separate processes) and a kombu message
(the Celery broker, through settings.celery_url), and be gone after stop()."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from luci_web.embedded_redis import RedisUnavailable, ensure_redis
from luci_web.settings import celery_url


@pytest.fixture(params=["redis-server", "fakeredis"])
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Callable[[], None], Path]]:
    if request.param == "redis-server" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    url, what, stop = ensure_redis(tmp_path, {"LUCI_EMBEDDED_REDIS": request.param})
    try:
        yield url, what, stop, tmp_path
    finally:
        stop()


def _group_send_between_two_layers(url: str) -> dict:
    from channels_redis.core import RedisChannelLayer

    async def exchange() -> dict:
        sender, receiver = RedisChannelLayer(hosts=[url]), RedisChannelLayer(hosts=[url])
        try:
            channel = await receiver.new_channel()
            await receiver.group_add("overview", channel)
            await sender.group_send("overview", {"type": "live.message", "kind": "status", "n": 7})
            return await asyncio.wait_for(receiver.receive(channel), 5)
        finally:
            await sender.close_pools()
            await receiver.close_pools()

    return asyncio.run(exchange())


def test_embedded_server_answers_ping_group_send_and_kombu(embedded) -> None:  # type: ignore[no-untyped-def]
    url = embedded[0]
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        assert client.ping() is True
    finally:
        client.close()
    message = _group_send_between_two_layers(url)
    assert message["type"] == "live.message" and message["n"] == 7

    from kombu import Connection

    with Connection(celery_url(url), connect_timeout=2) as conn:
        queue = conn.SimpleQueue("demo-check")
        queue.put({"task": "ping"})
        got = queue.get(timeout=5)
        got.ack()
        assert got.payload == {"task": "ping"}
        queue.close()


def test_redis_server_flavour_uses_a_private_unix_socket(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    url, what, stop = ensure_redis(tmp_path, {"LUCI_EMBEDDED_REDIS": "redis-server"})
    sock = tmp_path / "redis" / "redis.sock"
    try:
        assert url == f"unix://{sock}?db=0"
        assert what == "redis-server (unix socket)"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert celery_url(url) == f"redis+socket://{sock}"
        pid = redis.Redis.from_url(url).info("server")["process_id"]
        assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C does not reach it first
    finally:
        stop()
    assert not sock.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_fakeredis_flavour_listens_on_loopback_and_stops(tmp_path: Path) -> None:
    url, what, stop = ensure_redis(tmp_path, {"LUCI_EMBEDDED_REDIS": "fakeredis"})
    try:
        assert what == "fakeredis (127.0.0.1)"
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    finally:
        stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_redis_url_is_used_as_given(tmp_path: Path) -> None:
    url, what, stop = ensure_redis(tmp_path, {"REDIS_URL": "redis://:pw@db.example:6379/2"})
    stop()
    assert (url, what) == ("redis://:pw@db.example:6379/2", "REDIS_URL")
    assert not (tmp_path / "redis").exists()  # nothing started


def test_unknown_choice_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailable, match=r"^LUCI_EMBEDDED_REDIS='memcached': use redis-server or fakeredis$"):
        ensure_redis(tmp_path, {"LUCI_EMBEDDED_REDIS": "memcached"})
