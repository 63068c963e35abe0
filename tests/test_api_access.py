"""Who may do what over the REST API: the permission matrix over every API route (from the one table shared with
the console, luci_web.access.rights.URL_RIGHTS, under "api:<route name>").

The matrix walks the API's URL resolver, so every area's routes are walked, including ones added later: a route
missing from URL_RIGHTS, or an "api:" row without a route, fails test_every_api_route_is_classified. Each role
(anonymous, no grant, each single cluster right, the global rights) calls every route with every method its view
implements, with a real token, against a cluster whose nodes listen on no port (a closed 127.0.0.1 port): nothing
answers, so an allowed call may end in 503, 404, 400, 202 ... but never in 401 or 403, and never in another 5xx.
A socket guard fails the test if anything tries to reach an address outside 127.0.0.0/8."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.urls import URLPattern, reverse
from rest_framework.test import APIClient

from luci_web.access.rights import (
    CLUSTER_RIGHTS,
    GLOBAL_RIGHTS,
    LOGIN,
    PUBLIC,
    URL_RIGHTS,
    can,
    holds,
    url_right,
)
from luci_web.api import tokens
from luci_web.clusters import gateway
from luci_web.clusters.models import Cluster, Node, Operation
from tests.luci_fixtures import routes, user_with

PROBLEM = "application/problem+json"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# role -> (global rights, rights on the cluster); None: no credentials
ROLES: dict[str, tuple[set[str], set[str]] | None] = {
    "anonymous": None,
    "no_grant": (set(), set()),
    "viewer": (set(), {"view"}),
    **{right: (set(), {right}) for right in CLUSTER_RIGHTS if right != "view"},
    "create_clusters": ({"create_clusters"}, set()),
    "import_clusters": ({"import_clusters"}, set()),
    "admin": ({"administrator"}, set()),
}
STRING_HINTS = {"node": "n1", "service": "web", "ref": "web", "domain": "prefer_n1", "resource": "10.0.0.50",
                "device": "apc", "fence": "apc", "method": "power", "version": "1", "name": "web", "action": "join",
                "command": "enable", "section": "cman"}
UNKNOWN_URL = "/api/v1/no/such/path/"
BODY_METHODS = ("post", "put", "patch")
# A route whose right is LOGIN or PUBLIC asks nothing of the role but to be signed in: besides anonymous, the
# least and the most privileged roles call it (the OpenAPI document alone costs about a second a call).
SIGNED_IN_PROBES = {"no_grant", "admin"}


# -- walking the API's routes ---------------------------------------------------------------------------------------
def api_routes() -> list[tuple[str, URLPattern]]:
    return routes("luci_web.api.urls")


def view_methods(pattern: URLPattern) -> list[str]:
    """The methods the route's view answers: http_method_names with a handler (HEAD wherever GET is)."""
    cls = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
    assert cls is not None, f"{pattern.name}: not a class-based view"
    methods = [m for m in cls.http_method_names if hasattr(cls, m)]
    if "get" in methods and "head" in cls.http_method_names and "head" not in methods:
        methods.append("head")
    return methods


def route_url(name: str, pattern: URLPattern, world: dict[str, Any], cluster: str = "alpha") -> str:
    if name == "unknown":
        return UNKNOWN_URL
    converters = getattr(pattern.pattern, "converters", {}) or {}
    kwargs: dict[str, Any] = {}
    for key in list(converters) or list(pattern.pattern.regex.groupindex):
        kind = type(converters.get(key)).__name__
        if key == "cluster":
            kwargs[key] = cluster
        elif kind == "UUIDConverter":
            kwargs[key] = world["operation"].pk
        elif kind == "IntConverter":
            kwargs[key] = world["token"].pk if "token" in name else 1
        else:
            kwargs[key] = next((v for hint, v in STRING_HINTS.items() if hint in key), "x")
    return reverse(f"api:{name}", kwargs=kwargs)


# -- the world: a cluster nobody can reach ----------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Every socket connect to an address outside 127.0.0.0/8 (or ::1) is refused and recorded."""
    tried: list[str] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                tried.append(str(host))
                raise ConnectionRefusedError(f"test guard: {host} is not a loopback address")
        return real(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield tried
    finally:
        socket.socket.connect = real  # type: ignore[method-assign]


@pytest.fixture
def world(db, settings, tmp_path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from luci_web.celery import app

    settings.LUCI_HOME = tmp_path
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.CELERY_TASK_ALWAYS_EAGER = True
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # a task queued runs here and finds no node, instead of waiting for a broker
    gateway.reset()
    cache.clear()
    cluster = Cluster.objects.create(name="alpha")
    port = closed_port()
    for name in ("n1", "n2"):
        Node.objects.create(cluster=cluster, name=name, address="127.0.0.1", port=port,
                            host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnot+a+real+key", fingerprint="x")
    Cluster.objects.create(name="beta")
    clients: dict[str, APIClient] = {"anonymous": APIClient(HTTP_HOST="127.0.0.1")}
    users: dict[str, Any] = {}
    for role, spec in ROLES.items():
        if spec is None:
            continue
        users[role] = user = user_with(f"u_{role}", cluster, spec[1], spec[0])
        _, text = tokens.issue(user, "matrix")
        clients[role] = APIClient(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {text}")
    operation = Operation.objects.create(cluster=cluster, cluster_name="alpha", kind="push_config",
                                         user=users["admin"], state=Operation.DONE)
    token, _ = tokens.issue(users["admin"], "someone's")
    try:
        with loopback_only() as tried:
            yield {"cluster": cluster, "users": users, "clients": clients, "operation": operation, "token": token,
                   "tried": tried}
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def call(client: APIClient, method: str, url: str) -> Any:
    """One request, inside a savepoint rolled back afterwards: a DELETE that removes the cluster leaves the next
    request the same world."""
    with transaction.atomic():
        if method in BODY_METHODS:
            response = getattr(client, method)(url, {}, format="json")
        else:
            response = getattr(client, method)(url)
        transaction.set_rollback(True)
    return response


# -- the table itself ------------------------------------------------------------------------------------------------
def test_every_api_route_is_classified() -> None:
    names = {f"api:{name}" for name, _ in api_routes()}
    missing = sorted(names - set(URL_RIGHTS))
    assert not missing, f"API routes missing from luci_web.access.rights.URL_RIGHTS: {missing}"
    stale = sorted({n for n in URL_RIGHTS if n.startswith("api:")} - names)
    assert not stale, f"URL_RIGHTS names API routes that do not exist: {stale}"


def test_api_rights_are_known_and_cluster_rights_take_the_cluster() -> None:
    valid = set(CLUSTER_RIGHTS) | set(GLOBAL_RIGHTS) | {PUBLIC, LOGIN}
    for name, pattern in api_routes():
        for method in ("GET", "POST"):
            right = url_right(f"api:{name}", method)
            assert right in valid, f"api:{name}: unknown right {right!r}"
            if right in CLUSTER_RIGHTS:
                takes = set(getattr(pattern.pattern, "converters", {}) or pattern.pattern.regex.groupindex)
                assert "cluster" in takes, f"api:{name} needs the cluster right {right!r} but takes no <cluster>"
    assert [n for n, _ in api_routes()][-1] == "unknown", "the catch-all must be the last API route"


# -- the matrix ------------------------------------------------------------------------------------------------------
def verdict(role: str, user: Any, cluster: Cluster, name: str, method: str, response: Any) -> str:
    """'' when the answer is what the table says, else one line saying what is wrong."""
    right = url_right(f"api:{name}", method.upper())
    code = response.status_code
    if code >= 500 and code != 503:
        return f"{code} (a 5xx other than 503 NO_NODE_ANSWERED)"
    refused = code in (401, 403) or (code == 404 and right in CLUSTER_RIGHTS and not can(user, cluster, "view"))
    if refused and method != "head" and not response["Content-Type"].startswith(PROBLEM):
        return f"{code} refusal is not a problem document ({response['Content-Type']})"
    if user is None:
        if right == PUBLIC:
            return "" if code not in (401, 403) else f"a public route refused anonymous with {code}"
        return "" if code == 401 else f"anonymous got {code}, not 401"
    if holds(user, right, cluster):
        if code in (401, 403):
            return f"{role} holds {right!r} but got {code}"
        hidden = code == 404 and right in CLUSTER_RIGHTS and method != "head" and json.loads(
            response.content).get("detail", "").startswith("no cluster named")
        if hidden:
            return f"{role} holds {right!r} but the cluster was hidden (404)"
        return ""
    if right in CLUSTER_RIGHTS and not can(user, cluster, "view"):
        return "" if code == 404 else f"{role} cannot view the cluster but got {code}, not 404"
    return "" if code == 403 else f"{role} lacks {right!r} but got {code}, not 403"


@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(world: dict[str, Any], role: str) -> None:
    user = world["users"].get(role)
    client = world["clients"][role]
    cluster = world["cluster"]
    problems: list[str] = []
    calls = 0
    for name, pattern in api_routes():
        if f"api:{name}" not in URL_RIGHTS:
            continue  # reported by test_every_api_route_is_classified
        url = route_url(name, pattern, world)
        for method in view_methods(pattern):
            if role not in SIGNED_IN_PROBES | {"anonymous"} and url_right(f"api:{name}", method.upper()) in (
                    LOGIN, PUBLIC):
                continue
            response = call(client, method, url)
            calls += 1
            wrong = verdict(role, user, cluster, name, method, response)
            if wrong:
                problems.append(f"{method.upper()} {url} (api:{name}, needs "
                                f"{url_right(f'api:{name}', method.upper())}): {wrong}")
    assert not world["tried"], f"something tried non-loopback addresses: {sorted(set(world['tried']))}"
    assert calls >= 10, f"the matrix made only {calls} calls: the resolver walk found too little"
    assert not problems, f"{len(problems)} problem(s) for role {role}:\n" + "\n".join(problems)


def test_a_grant_on_one_cluster_does_not_open_another(world: dict[str, Any]) -> None:
    """The matrix is not vacuous: the viewer of alpha sees beta as not existing, on every cluster route."""
    client = world["clients"]["viewer"]
    checked = 0
    for name, pattern in api_routes():
        if "cluster" not in (getattr(pattern.pattern, "converters", {}) or {}) or f"api:{name}" not in URL_RIGHTS:
            continue
        for method in view_methods(pattern):
            response = call(client, method, route_url(name, pattern, world, cluster="beta"))
            assert response.status_code == 404, (name, method, response.status_code)
            checked += 1
    assert checked >= 2
    body = json.loads(call(client, "get", reverse("api:cluster_detail", args=["beta"])).content)
    assert body["code"] == "NOT_FOUND" and "beta" in body["detail"]


def test_the_guard_refuses_non_loopback_addresses(world: dict[str, Any]) -> None:
    with pytest.raises(ConnectionRefusedError), socket.socket() as s:
        s.connect(("192.0.2.1", 9))
    assert world["tried"] == ["192.0.2.1"]
    world["tried"].clear()
