"""The websocket subscriptions of the console (luci_web.live): through the real ASGI application (origin check,
session authentication, routing), each stream is refused to whoever may not view it, and a viewer receives what
is published to it."""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("channels", reason="the console's dependencies are not installed (pip install -e .[console])")

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture(autouse=True)
def memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def session_cookie(user) -> bytes:  # type: ignore[no-untyped-def]
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def make_world():  # type: ignore[no-untyped-def]
    """A cluster, a viewer of it, a user with no grant, and an operation the viewer started."""
    from django.contrib.auth.models import User

    from luci_web.access.models import ClusterGrant
    from luci_web.clusters.models import Cluster, Operation

    cluster = Cluster.objects.create(name="alpha")
    viewer = User.objects.create_user("viewer", password="pw-viewer-1")
    stranger = User.objects.create_user("stranger", password="pw-stranger-1")
    ClusterGrant.objects.create(user=viewer, cluster=cluster, view=True)
    op = Operation.objects.create(cluster=None, cluster_name="", kind="create", user=viewer)
    return {"cluster": cluster.pk, "op": str(op.pk), "viewer": session_cookie(viewer),
            "stranger": session_cookie(stranger)}


async def open_socket(path: str, cookie: bytes | None = None) -> tuple[WebsocketCommunicator, bool, int | None]:
    from luci_web.asgi import application

    headers = [ORIGIN] + ([(b"cookie", cookie)] if cookie else [])
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await comm.connect(timeout=3)
    return comm, connected, code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_cluster_stream_refuses_anonymous_and_non_viewers_and_delivers_to_a_viewer():
    from luci_web.live.publish import publish

    world = await sync_to_async(make_world)()
    path = f"/ws/clusters/{world['cluster']}/"

    comm, connected, code = await open_socket(path)
    assert not connected and code == 4401
    comm, connected, code = await open_socket(path, world["stranger"])
    assert not connected and code == 4403
    comm, connected, code = await open_socket(f"/ws/clusters/{world['cluster'] + 99}/", world["viewer"])
    assert not connected and code == 4403  # no such cluster

    comm, connected, _ = await open_socket(path, world["viewer"])
    assert connected
    try:
        payload = {"at": 1700000000.25, "config_version": 4, "quorate": True}
        await sync_to_async(publish)(f"cluster-{world['cluster']}", "status", payload)
        assert await comm.receive_json_from(timeout=3) == {"kind": "status", "payload": payload}
        await sync_to_async(publish)("cluster-999999", "status", {"at": 1.0})  # another cluster's: not sent here
        assert await comm.receive_nothing(timeout=0.2)
    finally:
        await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_foreign_origin_is_refused():
    from luci_web.asgi import application

    world = await sync_to_async(make_world)()
    comm = WebsocketCommunicator(application, f"/ws/clusters/{world['cluster']}/",
                                 headers=[(b"origin", b"http://evil.example"), (b"cookie", world["viewer"])])
    connected, _ = await comm.connect(timeout=3)
    assert not connected


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_overview_needs_a_login_and_delivers_status_messages():
    from luci_web.live.publish import OVERVIEW, publish

    world = await sync_to_async(make_world)()
    comm, connected, code = await open_socket("/ws/overview/")
    assert not connected and code == 4401
    comm, connected, _ = await open_socket("/ws/overview/", world["viewer"])
    assert connected
    try:
        await sync_to_async(publish)(OVERVIEW, "status", {"cluster": world["cluster"]})
        assert await comm.receive_json_from(timeout=3) == {"kind": "status", "payload": {"cluster": world["cluster"]}}
    finally:
        await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_operation_stream_is_its_starters_only():
    from luci_web.live.publish import operation_group, publish

    world = await sync_to_async(make_world)()
    path = f"/ws/operations/{world['op']}/"
    comm, connected, code = await open_socket(path, world["stranger"])
    assert not connected and code == 4403
    comm, connected, code = await open_socket(f"/ws/operations/{uuid.uuid4()}/", world["viewer"])
    assert not connected and code == 4403  # no such operation
    comm, connected, code = await open_socket(path)
    assert not connected and code == 4401

    comm, connected, _ = await open_socket(path, world["viewer"])
    assert connected
    try:
        await sync_to_async(publish)(operation_group(world["op"]), "operation", {"state": "running"})
        assert await comm.receive_json_from(timeout=3) == {"kind": "operation", "payload": {"state": "running"}}
    finally:
        await comm.disconnect()


def withdraw(username: str) -> None:
    """Every grant of `username` removed, as Users & Permissions does."""
    from django.contrib.auth.models import User

    from luci_web.access.models import ClusterGrant

    ClusterGrant.objects.filter(user=User.objects.get(username=username)).delete()


async def assert_closed_4403(comm: WebsocketCommunicator) -> None:
    assert await comm.receive_output(timeout=3) == {"type": "websocket.close", "code": 4403}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_withdrawn_view_right_closes_the_cluster_and_operation_streams(monkeypatch):  # type: ignore[no-untyped-def]
    """The right is checked again while the socket is open: once the viewer's grant is gone, the next message is
    not delivered and the socket is closed with 4403 (the operation stream too, for an operation of the cluster
    that someone else started)."""
    from luci_web.live import consumers
    from luci_web.live.publish import operation_group, publish

    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.0)  # check on every message

    def other_operation() -> str:
        from django.contrib.auth.models import User

        from luci_web.clusters.models import Cluster, Operation

        author = User.objects.create_user("author", password="pw-author-1")
        op = Operation.objects.create(cluster=Cluster.objects.get(name="alpha"), cluster_name="alpha",
                                      kind="push_config", user=author)
        return str(op.pk)

    world = await sync_to_async(make_world)()
    op_id = await sync_to_async(other_operation)()
    group = f"cluster-{world['cluster']}"
    stream, connected, _ = await open_socket(f"/ws/clusters/{world['cluster']}/", world["viewer"])
    assert connected
    op_stream, connected, _ = await open_socket(f"/ws/operations/{op_id}/", world["viewer"])
    assert connected
    try:
        await sync_to_async(publish)(group, "status", {"at": 1.0})
        assert await stream.receive_json_from(timeout=3) == {"kind": "status", "payload": {"at": 1.0}}
        await sync_to_async(publish)(operation_group(op_id), "operation", {"state": "running"})
        assert await op_stream.receive_json_from(timeout=3) == {"kind": "operation", "payload": {"state": "running"}}

        await sync_to_async(withdraw)("viewer")
        await sync_to_async(publish)(group, "status", {"at": 2.0, "quorate": True})
        await assert_closed_4403(stream)
        await sync_to_async(publish)(operation_group(op_id), "operation", {"state": "done"})
        await assert_closed_4403(op_stream)
        await sync_to_async(publish)(group, "status", {"at": 3.0})
        assert await stream.receive_nothing(timeout=0.2)  # left the group: nothing more
    finally:
        await stream.disconnect()
        await op_stream.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_recheck_is_cached_and_a_deactivated_starter_loses_their_operation_stream(monkeypatch):  # type: ignore[no-untyped-def]
    """At most one check per RECHECK_SECONDS: within it, messages flow without asking the database. After it,
    the user is read afresh: the operation's own starter, once deactivated, is closed out as well."""
    from luci_web.live import consumers
    from luci_web.live.publish import operation_group, publish

    def deactivate(username: str) -> None:
        from django.contrib.auth.models import User

        User.objects.filter(username=username).update(is_active=False)

    world = await sync_to_async(make_world)()
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 3600.0)
    stream, connected, _ = await open_socket(f"/ws/clusters/{world['cluster']}/", world["viewer"])
    assert connected
    op_stream, connected, _ = await open_socket(f"/ws/operations/{world['op']}/", world["viewer"])
    assert connected
    try:
        await sync_to_async(withdraw)("viewer")
        await sync_to_async(deactivate)("viewer")
        await sync_to_async(publish)(f"cluster-{world['cluster']}", "status", {"at": 1.0})
        assert await stream.receive_json_from(timeout=3) == {"kind": "status", "payload": {"at": 1.0}}  # cached
        monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.0)
        await sync_to_async(publish)(operation_group(world["op"]), "operation", {"state": "running"})
        await assert_closed_4403(op_stream)
    finally:
        await stream.disconnect()
        await op_stream.disconnect()
