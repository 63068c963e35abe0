"""Who may do what in the luci console: the permission matrix over every console URL (from the one table
luci_web.access.rights.URL_RIGHTS), the websocket subscription's check, the Users & Permissions page and
`manage.py luci_user`.

The matrix walks the console's URL resolver, so a view added later is walked too; a route missing from URL_RIGHTS
fails test_every_console_url_is_classified. The cluster in the database has a status set by hand and nodes on a
closed 127.0.0.1 port: nothing answers, and no page may fail with a 500 for it."""
from __future__ import annotations

import re
import socket
import uuid
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, resolve, reverse
from django.urls.exceptions import Resolver404

from luci_web.access.models import ClusterGrant
from luci_web.access.rights import (
    CLUSTER_RIGHTS,
    GLOBAL_RIGHTS,
    LOGIN,
    PUBLIC,
    URL_RIGHTS,
    can,
    cluster_rights,
    global_rights,
    has_global,
    holds,
    set_cluster_rights,
    set_global_rights,
    url_right,
)
from luci_web.audit.models import AuditEntry
from luci_web.clusters import gateway
from luci_web.clusters.models import Cluster, Node, Operation
from tests.luci_fixtures import routes

User = get_user_model()

# role -> (global rights, rights on the cluster); None: not signed in
ROLES: dict[str, tuple[set[str], set[str]] | None] = {
    "anonymous": None,
    "no_grant": (set(), set()),
    "viewer": (set(), {"view"}),
    "config": (set(), {"config"}),
    "service_cmd": (set(), {"service_cmd"}),
    "node_cmd": (set(), {"node_cmd"}),
    "membership": (set(), {"membership"}),
    "remove": (set(), {"remove"}),
    "create_clusters": ({"create_clusters"}, set()),
    "import_clusters": ({"import_clusters"}, set()),
    "admin": ({"administrator"}, set()),
}
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: a PBKDF2 user costs ~1 s here
VALID_RIGHTS = set(CLUSTER_RIGHTS) | set(GLOBAL_RIGHTS) | {PUBLIC, LOGIN}
HAND_STATUS = {
    "cluster": {"name": "alpha", "id": None, "generation": None}, "quorum": {"quorate": None, "groupmember": False},
    "rgmanager": "unknown",
    "members": [{"name": n, "nodeid": None, "online": False, "local": False, "rgmanager": False, "master": False,
                 "estranged": False, "qdisk": False, "agent": False, "state": "unknown", "config_version": None,
                 "message": "no answer"} for n in ("n1", "n2")],
    "services": [], "reported_by": None, "at": 1_700_000_000.0, "config_version": None, "drift": False,
    "edited_locally": [], "unreachable": ["n1", "n2"], "message": "no node answered",
}
STRING_HINTS = {"node": "n1", "service": "web", "ref": "web", "domain": "prefer_n1", "resource": "10.0.0.50",
                "device": "apc", "fence": "apc", "method": "power", "version": "1", "name": "web"}


# -- walking the console's routes ---------------------------------------------------------------------------------
def console_routes() -> list[tuple[str, URLPattern]]:
    return routes("luci_web.console.urls")


def route_kwargs(pattern: URLPattern, world: dict[str, Any]) -> dict[str, Any]:
    converters = getattr(pattern.pattern, "converters", {}) or {}
    names = list(converters) or list(pattern.pattern.regex.groupindex)
    kwargs: dict[str, Any] = {}
    for name in names:
        kind = type(converters.get(name)).__name__ if name in converters else "StringConverter"
        if name == "pk" or name == "cluster_id":
            kwargs[name] = world["cluster"].pk
        elif kind == "UUIDConverter":
            kwargs[name] = world["operation"].pk
        elif "user" in name:
            kwargs[name] = world["victim"].pk
        elif kind == "IntConverter":
            kwargs[name] = world["node"].pk if "node" in name else 1
        else:
            kwargs[name] = next((v for hint, v in STRING_HINTS.items() if hint in name), "x")
    return kwargs


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(db, settings, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings.LUCI_HOME = tmp_path
    settings.PASSWORD_HASHERS = FAST_HASHERS
    gateway.reset()
    cache.clear()
    cluster = Cluster.objects.create(name="alpha", status=HAND_STATUS)
    port = closed_port()
    node = None
    for name in ("n1", "n2"):
        node = Node.objects.create(cluster=cluster, name=name, address="127.0.0.1", port=port,
                                   host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnot+a+real+key", fingerprint="x")
    other = Cluster.objects.create(name="beta", status=HAND_STATUS)
    victim = User.objects.create_user("victim", password="victim-pass-1")
    users: dict[str, Any] = {}
    for role, spec in ROLES.items():
        if spec is None:
            continue
        user = User.objects.create_user(f"u_{role}", password="pw-" + role)
        set_global_rights(user, spec[0])
        if spec[1]:
            set_cluster_rights(user, cluster, spec[1])
        users[role] = user
    operation = Operation.objects.create(cluster=cluster, cluster_name="alpha", kind="push_config",
                                         user=users["admin"], state=Operation.DONE)
    yield {"cluster": cluster, "other": other, "node": node, "victim": victim, "users": users,
           "operation": operation}
    gateway.reset()


def fetch(user: Any, method: str, url: str) -> Any:
    """One request as `user` (None: anonymous), inside a savepoint rolled back afterwards: a POST that removes
    the cluster or deletes a user leaves the next request the same world."""
    with transaction.atomic():
        client = Client(raise_request_exception=False)
        if user is not None:
            client.force_login(user)
        response = client.get(url) if method == "GET" else client.post(url, {})
        transaction.set_rollback(True)
    return response


def login_url() -> str:
    return reverse(django_settings.LOGIN_URL)


def is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and response["Location"].split("?")[0] == login_url()


FORM = re.compile(r"<form\b([^>]*)>", re.I)
ATTR = re.compile(r"""\b(action|method)\s*=\s*["']([^"']*)["']""", re.I)


def offered_posts(html: str, page_url: str) -> list[str]:
    """The URLs the page's POST forms submit to."""
    targets = []
    for match in FORM.finditer(html):
        attrs = {k.lower(): v for k, v in ATTR.findall(match.group(1))}
        if attrs.get("method", "get").lower() == "post":
            targets.append(attrs.get("action") or page_url)
    return targets


# -- the table itself ---------------------------------------------------------------------------------------------
def test_every_console_url_is_classified() -> None:
    names = [name for name, _ in console_routes()]
    missing = sorted(set(names) - set(URL_RIGHTS))
    assert not missing, ("console routes missing from luci_web.access.rights.URL_RIGHTS (classify each: the right "
                         f"GET needs, then ':' and the right POST needs if different): {missing}")
    stale = sorted({n for n in URL_RIGHTS if not n.startswith("api:")} - set(names))  # the API's: test_api_access
    assert not stale, f"URL_RIGHTS names routes the console no longer has: {stale}"


def test_url_rights_use_known_rights_and_cluster_rights_take_the_cluster() -> None:
    for name, pattern in console_routes():
        for method in ("GET", "POST"):
            right = url_right(name, method)
            assert right in VALID_RIGHTS, f"{name}: unknown right {right!r} in URL_RIGHTS"
            if right in CLUSTER_RIGHTS:
                takes = set(getattr(pattern.pattern, "converters", {}) or pattern.pattern.regex.groupindex)
                assert "pk" in takes, f"{name} needs the cluster right {right!r} but its route has no <pk>"


def test_brief_classification_of_actions() -> None:
    """The classes the issue names: removing a cluster needs remove; user management is the administrator's."""
    assert url_right("cluster_remove", "POST") == "remove"
    assert url_right("cluster_create", "POST") == "create_clusters"
    assert url_right("cluster_add", "POST") == "import_clusters"
    for name in ("users", "user_add", "user_edit", "user_delete", "user_password", "audit"):
        assert url_right(name, "POST") == "administrator"
    for tab in ("nodes", "fence", "domains", "resources", "services", "configure", "history", "events", "whatif",
                "logs"):
        assert url_right(tab, "GET") == "view"


# -- the matrix ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(world: dict[str, Any], role: str) -> None:
    user = world["users"].get(role)
    cluster = world["cluster"]
    problems: list[str] = []
    for name, pattern in console_routes():
        if name not in URL_RIGHTS:
            continue  # reported by test_every_console_url_is_classified
        kwargs = route_kwargs(pattern, world)
        url = reverse(f"console:{name}", kwargs=kwargs)
        extra_args = set(kwargs) - {"pk"}
        for method in ("GET", "POST"):
            right = url_right(name, method)
            if right == PUBLIC:
                continue
            response = fetch(user, method, url)
            code = response.status_code
            where = f"{method} {url} ({name}, needs {right})"
            if code >= 500:
                problems.append(f"{where}: {code}")
                continue
            if user is None:
                if not (is_login_redirect(response) or code == 405):
                    problems.append(f"{where}: anonymous got {code}, not a redirect to the login page")
                continue
            allowed = holds(user, right, cluster)
            if method == "GET":
                if allowed:
                    ok = {200, 302, 405} | ({404, 400} if extra_args else set())
                    if code not in ok or is_login_redirect(response):
                        problems.append(f"{where}: {role} holds it but got {code}")
                    elif code == 200:
                        problems.extend(not_offered(user, cluster, response, url, role))
                elif code not in (403, 405):
                    problems.append(f"{where}: {role} lacks it but got {code}")
            else:
                if code == 405:
                    continue  # this route takes no POST
                if allowed and (code == 403 or is_login_redirect(response)):
                    problems.append(f"{where}: {role} holds it but the POST was refused ({code})")
                if not allowed and code != 403:
                    problems.append(f"{where}: {role} lacks it but the POST got {code}, not 403")
    assert not problems, f"{len(problems)} problem(s) for role {role}:\n" + "\n".join(problems)


def not_offered(user: Any, cluster: Cluster, response: Any, url: str, role: str) -> list[str]:
    """An action the user may not take is not offered: every POST form on the page targets a route whose POST
    right the user holds."""
    problems = []
    html = response.content.decode("utf-8", "replace")
    for target in offered_posts(html, url):
        path = target.split("?")[0]
        try:
            match = resolve(path)
        except Resolver404:
            continue
        if match.namespace != "console" or match.url_name not in URL_RIGHTS:
            continue
        right = url_right(match.url_name, "POST")
        target_cluster = Cluster.objects.filter(pk=match.kwargs.get("pk")).first() if "pk" in match.kwargs else None
        if not holds(user, right, target_cluster or cluster):
            problems.append(f"GET {url}: offers {role} a form posting to {path} ({match.url_name}, needs {right})")
    return problems


@pytest.mark.django_db
def test_matrix_catches_a_view_that_forgets_its_right(world: dict[str, Any]) -> None:
    """The matrix is not vacuous: a viewer's POST to an action needing more is refused (403)."""
    viewer = world["users"]["viewer"]
    response = fetch(viewer, "POST", reverse("console:cluster_remove", args=[world["cluster"].pk]))
    assert response.status_code == 403
    response = fetch(viewer, "GET", reverse("console:nodes", args=[world["other"].pk]))
    assert response.status_code == 403, "a grant on alpha must not open beta"


# -- rights helpers -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_rights_imply_view_and_admin_holds_everything(world: dict[str, Any]) -> None:
    cluster = world["cluster"]
    users = world["users"]
    assert cluster_rights(users["config"], cluster) == {"view", "config"}
    assert cluster_rights(users["admin"], cluster) == set(CLUSTER_RIGHTS)
    assert cluster_rights(users["no_grant"], cluster) == frozenset()
    assert not can(users["viewer"], cluster, "config")
    assert has_global(users["create_clusters"], "create_clusters")
    assert not has_global(users["create_clusters"], "import_clusters")
    assert global_rights(users["admin"]) == set(GLOBAL_RIGHTS)
    set_cluster_rights(users["viewer"], cluster, set())
    assert not ClusterGrant.objects.filter(user=users["viewer"], cluster=cluster).exists()
    with pytest.raises(ValueError):
        set_cluster_rights(users["viewer"], cluster, {"root"})
    inactive = users["config"]
    inactive.is_active = False
    inactive.save()
    assert cluster_rights(inactive, cluster) == frozenset()


# -- websocket subscriptions ----------------------------------------------------------------------------------------
async def _subscribe(user: Any, path: str) -> tuple[bool, Any]:
    from luci_web.live.routing import websocket_urlpatterns

    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, code = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected, code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_cluster_subscription_needs_view(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    def make() -> tuple[Any, ...]:
        cluster = Cluster.objects.create(name="ws", status=HAND_STATUS)
        stranger = User.objects.create_user("stranger", password="x-pass-123")
        viewer = User.objects.create_user("watcher", password="x-pass-123")
        set_cluster_rights(viewer, cluster, {"view"})
        return cluster, stranger, viewer

    cluster, stranger, viewer = await sync_to_async(make)()
    from django.contrib.auth.models import AnonymousUser

    path = f"/ws/clusters/{cluster.pk}/"
    assert await _subscribe(AnonymousUser(), path) == (False, 4401)
    assert await _subscribe(stranger, path) == (False, 4403)
    connected, _ = await _subscribe(viewer, path)
    assert connected
    assert await _subscribe(viewer, "/ws/clusters/999999/") == (False, 4403)
    op = await sync_to_async(Operation.objects.create)(cluster=cluster, cluster_name="ws", kind="x")
    assert await _subscribe(stranger, f"/ws/operations/{op.pk}/") == (False, 4403)
    assert (await _subscribe(viewer, f"/ws/operations/{op.pk}/"))[0]
    assert await _subscribe(viewer, f"/ws/operations/{uuid.uuid4()}/") == (False, 4403)


# -- the Users & Permissions page -----------------------------------------------------------------------------------
@pytest.fixture
def admin_client(world: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(world["users"]["admin"])
    return client


def test_users_page_lists_rights(world: dict[str, Any], admin_client: Client) -> None:
    html = admin_client.get(reverse("console:users")).content.decode()
    assert "u_config" in html and "Can Create Clusters" in html
    assert "alpha</strong>: config, view" in html
    assert 'href="/users/"' not in Client().get(reverse("console:login")).content.decode()
    viewer = Client()
    viewer.force_login(world["users"]["viewer"])
    overview = viewer.get(reverse("console:overview")).content.decode()
    assert reverse("console:users") not in overview and reverse("console:audit") not in overview


def test_add_user_with_global_rights(world: dict[str, Any], admin_client: Client) -> None:
    response = admin_client.post(reverse("console:user_add"), {
        "username": "carol", "password1": "a-long-pass-9", "password2": "a-long-pass-9",
        "rights": ["create_clusters"]})
    assert response.status_code == 302
    carol = User.objects.get(username="carol")
    assert carol.check_password("a-long-pass-9")
    assert global_rights(carol) == {"create_clusters"}
    entry = AuditEntry.objects.get(action="user.add")
    assert (entry.username, entry.target, entry.result) == ("u_admin", "carol", "ok")
    assert "a-long-pass-9" not in str(entry.detail) + entry.message


def test_add_user_with_mismatched_passwords_is_refused_and_audited(world: dict[str, Any],
                                                                    admin_client: Client) -> None:
    response = admin_client.post(reverse("console:user_add"), {
        "username": "dave", "password1": "a-long-pass-9", "password2": "another-pass-9"})
    assert response.status_code == 200
    assert "field-error" in response.content.decode()
    assert not User.objects.filter(username="dave").exists()
    assert AuditEntry.objects.get(action="user.add").result == "failed"


def test_edit_rights_grid(world: dict[str, Any], admin_client: Client) -> None:
    cluster, other = world["cluster"], world["other"]
    victim = world["victim"]
    page = admin_client.get(reverse("console:user_edit", args=[victim.pk])).content.decode()
    assert f'name="grant-{cluster.pk}" value="service_cmd"' in page
    response = admin_client.post(reverse("console:user_edit", args=[victim.pk]), {
        "global": ["import_clusters"], f"grant-{cluster.pk}": ["service_cmd", "node_cmd"],
        f"grant-{other.pk}": ["view"]})
    assert response.status_code == 302
    assert cluster_rights(victim, cluster) == {"view", "service_cmd", "node_cmd"}
    assert cluster_rights(victim, other) == {"view"}
    assert global_rights(victim) == {"import_clusters"}
    entry = AuditEntry.objects.get(action="user.rights")
    assert entry.target == "victim" and "alpha: node_cmd, service_cmd, view" in entry.message
    # unticking everything removes the grant
    admin_client.post(reverse("console:user_edit", args=[victim.pk]), {})
    victim = User.objects.get(pk=victim.pk)  # a fresh object: the old one caches its permissions
    assert cluster_rights(victim, cluster) == frozenset() and global_rights(victim) == frozenset()


def test_admin_cannot_drop_own_admin_right_nor_delete_self(world: dict[str, Any], admin_client: Client) -> None:
    me = world["users"]["admin"]
    admin_client.post(reverse("console:user_edit", args=[me.pk]), {"global": ["create_clusters"]})
    me.refresh_from_db()
    assert me.is_superuser
    response = admin_client.post(reverse("console:user_delete", args=[me.pk]))
    assert response.status_code == 302 and User.objects.filter(pk=me.pk).exists()
    assert set(AuditEntry.objects.values_list("action", "result")) == {("user.rights", "refused"),
                                                                       ("user.delete", "refused")}
    page = admin_client.get(reverse("console:user_edit", args=[me.pk])).content.decode()
    assert reverse("console:user_delete", args=[me.pk]) not in page, "deleting yourself is not offered"


def test_delete_user_and_reset_password(world: dict[str, Any], admin_client: Client) -> None:
    victim = world["victim"]
    bad = admin_client.post(reverse("console:user_password", args=[victim.pk]),
                            {"new_password1": "new-pass-123", "new_password2": "other-pass-123"})
    assert bad.status_code == 400
    ok = admin_client.post(reverse("console:user_password", args=[victim.pk]),
                           {"new_password1": "new-pass-123", "new_password2": "new-pass-123"})
    assert ok.status_code == 302
    victim.refresh_from_db()
    assert victim.check_password("new-pass-123")
    admin_client.post(reverse("console:user_delete", args=[victim.pk]))
    assert not User.objects.filter(pk=victim.pk).exists()
    assert list(AuditEntry.objects.order_by("id").values_list("action", "result")) == [
        ("user.password", "failed"), ("user.password", "ok"), ("user.delete", "ok")]
    assert not any("new-pass-123" in e.message for e in AuditEntry.objects.all())


# -- manage.py luci_user --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_luci_user_command(monkeypatch: pytest.MonkeyPatch, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    cluster = Cluster.objects.create(name="gamma")
    monkeypatch.setattr("sys.stdin", StringIO("first-pass-123\n"))
    out = StringIO()
    call_command("luci_user", "add", "root2", "--admin", "--password-stdin", stdout=out)
    root2 = User.objects.get(username="root2")
    assert root2.is_superuser and root2.is_staff and root2.check_password("first-pass-123")
    monkeypatch.setattr("sys.stdin", StringIO("other-pass-123\n"))
    call_command("luci_user", "add", "op", "--import-clusters", "--password-stdin", stdout=out)
    op = User.objects.get(username="op")
    assert global_rights(op) == {"import_clusters"}
    call_command("luci_user", "grant", "op", "gamma", "view,service_cmd", stdout=out)
    assert cluster_rights(op, cluster) == {"view", "service_cmd"}
    call_command("luci_user", "revoke", "op", "gamma", "service_cmd", stdout=out)
    assert cluster_rights(op, cluster) == {"view"}
    call_command("luci_user", "modify", "op", "--create-clusters", "--no-import-clusters", stdout=out)
    op = User.objects.get(username="op")
    assert global_rights(op) == {"create_clusters"}
    call_command("luci_user", "revoke", "op", "gamma", stdout=out)
    assert cluster_rights(op, cluster) == frozenset()
    assert AuditEntry.objects.filter(action="user.rights", cluster_name="gamma").count() == 3
    for argv, message in [(("grant", "op", "gamma", "view,root"), "unknown right"),
                          (("grant", "nobody", "gamma", "view"), "no user 'nobody'"),
                          (("grant", "op", "nowhere", "view"), "no cluster 'nowhere'")]:
        with pytest.raises(CommandError, match=message):
            call_command("luci_user", *argv, stdout=out)
    monkeypatch.setattr("sys.stdin", StringIO("short\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("luci_user", "add", "weak", "--password-stdin", stdout=out)
    assert not User.objects.filter(username="weak").exists()
    assert "first-pass-123" not in out.getvalue()


# -- Django's admin: another door to the same rights, audited too ---------------------------------------------------
def admin_url(model: str, *parts: Any) -> str:
    return "/admin/" + model + "/" + "".join(f"{p}/" for p in parts)


def test_django_admin_grant_changes_are_audited(world: dict[str, Any], admin_client: Client) -> None:
    victim, other = world["victim"], world["other"]
    response = admin_client.post(admin_url("access/clustergrant", "add"),
                                 {"user": victim.pk, "cluster": other.pk, "view": "on", "config": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    grant = ClusterGrant.objects.get(user=victim, cluster=other)
    assert cluster_rights(victim, other) == {"view", "config"}
    response = admin_client.post(admin_url("access/clustergrant", grant.pk, "change"),
                                 {"user": victim.pk, "cluster": other.pk, "view": "on", "config": "on",
                                  "service_cmd": "on"})
    assert response.status_code == 302
    response = admin_client.post(admin_url("access/clustergrant", grant.pk, "delete"), {"post": "yes"})
    assert response.status_code == 302 and not ClusterGrant.objects.filter(pk=grant.pk).exists()
    set_cluster_rights(victim, other, {"node_cmd"})
    bulk = ClusterGrant.objects.get(user=victim, cluster=other)
    response = admin_client.post(admin_url("access/clustergrant"), {"action": "delete_selected", "post": "yes",
                                                                   "_selected_action": [bulk.pk]})
    assert response.status_code == 302 and not ClusterGrant.objects.filter(pk=bulk.pk).exists()
    entries = list(AuditEntry.objects.filter(action="user.rights").order_by("id")
                   .values_list("username", "cluster_name", "target", "message", "result"))
    assert entries == [
        ("u_admin", "beta", "victim", "beta: config, view (Django admin)", "ok"),
        ("u_admin", "beta", "victim", "beta: config, service_cmd, view (Django admin)", "ok"),
        ("u_admin", "beta", "victim", "beta: none (Django admin)", "ok"),
        ("u_admin", "beta", "victim", "beta: none (Django admin)", "ok"),
    ]


def test_django_admin_user_changes_are_audited(world: dict[str, Any], admin_client: Client) -> None:
    response = admin_client.post(admin_url("auth/user", "add"), {
        "username": "erin", "password1": "a-long-pass-9", "password2": "a-long-pass-9", "usable_password": "true"})
    assert response.status_code == 302, response.content.decode()[:3000]
    erin = User.objects.get(username="erin")
    from django.contrib.auth.models import Permission

    create = Permission.objects.get(content_type__app_label="access", codename="create_clusters")
    response = admin_client.post(admin_url("auth/user", erin.pk, "change"), {
        "username": "erin", "first_name": "", "last_name": "", "email": "", "is_active": "on",
        "user_permissions": [create.pk], "date_joined_0": "2024-01-01", "date_joined_1": "00:00:00"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert global_rights(User.objects.get(pk=erin.pk)) == {"create_clusters"}
    response = admin_client.post(admin_url("auth/user", erin.pk, "password"), {
        "password1": "other-pass-123", "password2": "other-pass-123", "usable_password": "true"})
    assert response.status_code == 302, response.content.decode()[:3000]
    response = admin_client.post(admin_url("auth/user", erin.pk, "delete"), {"post": "yes"})
    assert response.status_code == 302 and not User.objects.filter(username="erin").exists()
    entries = list(AuditEntry.objects.order_by("id").values_list("username", "action", "target", "result"))
    assert entries == [("u_admin", "user.add", "erin", "ok"), ("u_admin", "user.rights", "erin", "ok"),
                       ("u_admin", "user.password", "erin", "ok"), ("u_admin", "user.delete", "erin", "ok")]
    rights = AuditEntry.objects.get(action="user.rights")
    assert rights.detail["global"] == ["create_clusters"] and "user_permissions" in rights.detail["fields"]
    assert rights.message.endswith("(Django admin)")
    assert not any("pass-123" in str(e.detail) + e.message or "pass-9" in str(e.detail) + e.message
                   for e in AuditEntry.objects.all())


def test_the_audit_log_is_read_only_in_django_admin(world: dict[str, Any], admin_client: Client) -> None:
    from luci_web.audit.log import record

    entry = record(world["users"]["admin"], "cluster.remove", cluster="alpha", target="alpha")
    assert admin_client.get(admin_url("audit/auditentry")).status_code == 200
    assert admin_client.get(admin_url("audit/auditentry", entry.pk, "change")).status_code == 200  # view only
    assert admin_client.get(admin_url("audit/auditentry", "add")).status_code == 403
    assert admin_client.post(admin_url("audit/auditentry", entry.pk, "change"),
                             {"action": "nothing", "result": "ok"}).status_code == 403
    assert admin_client.post(admin_url("audit/auditentry", entry.pk, "delete"), {"post": "yes"}).status_code == 403
    admin_client.post(admin_url("audit/auditentry"), {"action": "delete_selected", "post": "yes",
                                                      "_selected_action": [entry.pk]})
    assert list(AuditEntry.objects.values_list("pk", "action")) == [(entry.pk, "cluster.remove")]
