"""Shared by the luci and API tests: a lab registered in luci (its nodes' host keys probed and pinned, luci's key
authorised on each, Celery eager), users with given rights, and API clients that carry a token."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def registered(lab: Any, settings: Any, home: Path, name: str | None = None) -> Iterator[Any]:
    """The lab as a Cluster row in luci's database, for the duration of the block (Celery runs tasks eagerly)."""
    from luci_web.celery import app
    from luci_web.clusters import gateway
    from luci_web.clusters.models import Cluster, Node
    from ricci_agent import keys

    home.mkdir(parents=True, exist_ok=True)
    settings.LUCI_HOME = Path(home)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    gateway.reset()
    try:
        public = gateway.luci_public_key()
        cluster = Cluster.objects.create(name=name or lab.cluster_name)
        for node in lab.nodes:
            keys.authorize(node.root, public)
            line, fingerprint = gateway.probe_host_key(node.address, node.port)
            Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                                host_key=line, fingerprint=fingerprint)
        yield cluster
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def user_with(username: str, cluster: Any = None, rights: Iterable[str] = (), global_rights: Iterable[str] = ()) -> Any:
    """A user holding `rights` on `cluster` and `global_rights` ("administrator" makes a superuser)."""
    from django.contrib.auth import get_user_model

    from luci_web.access.rights import set_cluster_rights, set_global_rights

    user = get_user_model().objects.create_user(username, password="pw-" + username + "-pw")
    set_global_rights(user, set(global_rights))
    if cluster is not None and rights:
        set_cluster_rights(user, cluster, set(rights))
    return user


def token_client(user: Any) -> Any:
    """A DRF APIClient sending `Authorization: Bearer <a new token of user>` (and Host 127.0.0.1)."""
    from rest_framework.test import APIClient

    from luci_web.api import tokens

    _, token = tokens.issue(user, "test")
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.token = token  # type: ignore[attr-defined]
    return client


def routes(urlconf: str) -> list[tuple[str, Any]]:
    """(url name, URLPattern) of every route of `urlconf`, nested includes too (the rights tests walk them)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[tuple[str, Any]] = []

    def walk(patterns: list[Any]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns)
            elif isinstance(p, URLPattern):
                found.append((p.name or f"<unnamed {p.pattern}>", p))

    walk(get_resolver(urlconf).url_patterns)
    return found
