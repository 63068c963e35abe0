"""The Redis-protocol server behind the console when REDIS_URL is not set (stack-notes §2).

Always the Redis protocol, a pluggable server: REDIS_URL when set (production); else Debian's `redis-server` on a
private 0700 unix socket, with no persistence, as a child of the caller; else fakeredis' TCP server in a thread
of the caller on 127.0.0.1 (TCP_NODELAY set, which makes it 10x faster). LUCI_EMBEDDED_REDIS=redis-server|fakeredis
forces one. The application code is the same in every case: settings read only REDIS_URL.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

READY_TIMEOUT = 5.0


class RedisUnavailable(Exception):
    """No server could be started (one line, for the user)."""


def _ping(sock_path: str | None, address: tuple[str, int] | None, timeout: float) -> bool:
    try:
        if sock_path is not None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            conn.connect(sock_path)
        else:
            assert address is not None
            conn = socket.create_connection(address, timeout=timeout)
        with conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _wait_ready(check: Callable[[], bool], what: str, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise RedisUnavailable(f"{what} exited before it answered")
        time.sleep(0.01)
    raise RedisUnavailable(f"{what} did not answer within {READY_TIMEOUT:g} s")


def start_redis_server(var_dir: Path) -> tuple[str, Callable[[], None]]:
    """Debian's redis-server on var_dir/redis/redis.sock (folder 0700, socket 0700)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not installed")
    folder = Path(var_dir) / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    sock = folder / "redis.sock"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning", "--logfile", str(folder / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        process_group=0,  # a terminal's Ctrl-C reaches the caller only: it stops the server last, after its clients
    )
    try:
        _wait_ready(lambda: _ping(str(sock), None, 0.5), "redis-server", lambda: proc.poll() is None)
    except BaseException:  # an interrupt while waiting must not leave the server behind either
        proc.kill()
        proc.wait(5)
        raise

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        sock.unlink(missing_ok=True)

    return f"unix://{sock}?db=0", stop


def start_fakeredis() -> tuple[str, Callable[[], None]]:
    """fakeredis' Redis-protocol server (with Lua, which kombu and channels-redis need) on 127.0.0.1."""
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        raise RedisUnavailable("neither redis-server nor fakeredis[lua] is installed") from None

    class NoDelayServer(TcpFakeServer):  # type: ignore[misc]
        """Without TCP_NODELAY every multi-reply exchange waits ~40 ms on delayed ACKs (stack-notes §2)."""

        daemon_threads = True

        def get_request(self):  # type: ignore[no-untyped-def]
            conn, addr = super().get_request()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, addr

    server = NoDelayServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name="embedded-fakeredis")
    thread.start()
    host, port = server.server_address[:2]

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    try:
        _wait_ready(lambda: _ping(None, (host, port), 0.5), "fakeredis")
    except BaseException:
        stop()
        raise

    return f"redis://{host}:{port}/0", stop


def ensure_redis(var_dir: Path, environ: dict[str, str] | None = None) -> tuple[str, str, Callable[[], None]]:
    """(url, what, stop): REDIS_URL as is, else an embedded server chosen as the module docstring says."""
    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL", "")
    if url:
        return url, "REDIS_URL", lambda: None
    choice = env.get("LUCI_EMBEDDED_REDIS", "")
    if choice not in ("", "redis-server", "fakeredis"):
        raise RedisUnavailable(f"LUCI_EMBEDDED_REDIS={choice!r}: use redis-server or fakeredis")
    if choice == "redis-server" or (not choice and shutil.which("redis-server")):
        url, stop = start_redis_server(var_dir)
        return url, "redis-server (unix socket)", stop
    url, stop = start_fakeredis()
    return url, "fakeredis (127.0.0.1)", stop
