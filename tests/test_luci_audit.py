"""The audit log: record() masks secrets on the way in, the audit page (administrators only) shows entries with
filters and 50 to a page and never a secret, and Django's admin shows the log read-only."""
from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from luci_web.access.rights import set_cluster_rights
from luci_web.audit.log import MASK, mask, record
from luci_web.audit.models import AuditEntry
from luci_web.clusters.models import Cluster
from tests.test_luci_access import FAST_HASHERS

User = get_user_model()
FENCE_PASSWORD = "Tr0ub4dor-fence-9"


@pytest.fixture
def people(db, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    alpha = Cluster.objects.create(name="alpha")
    admin = User.objects.create_superuser("root", password="root-pass-123")
    viewer = User.objects.create_user("watcher", password="watch-pass-123")
    set_cluster_rights(viewer, alpha, {"view", "config"})
    client = Client()
    client.force_login(admin)
    return {"alpha": alpha, "admin": admin, "viewer": viewer, "client": client}


def audit_rows(client: Client, **query: str) -> str:
    """The table body only (the filter form lists every action and cluster)."""
    html = audit_page(client, **query)
    return html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""


def audit_page(client: Client, **query: str) -> str:
    response = client.get(reverse("console:audit"), query)
    assert response.status_code == 200
    return response.content.decode()


def test_mask_covers_dicts_lists_and_text() -> None:
    assert mask({"passwd": "s", "login": "apc", "nested": [{"password": "p"}]}) == {
        "passwd": MASK, "login": "apc", "nested": [{"password": MASK}]}
    assert mask('<fencedevice name="apc" passwd="s3cret"/>') == f'<fencedevice name="apc" passwd="{MASK}"/>'
    assert mask("login=apc passwd=s3cret") == f"login=apc passwd={MASK}"


def test_a_fence_password_never_reaches_the_log_or_the_page(people: dict[str, Any]) -> None:
    record(people["admin"], "fence.add", cluster=people["alpha"], target="apc",
           detail={"agent": "fence_apc", "ipaddr": "10.0.0.9", "passwd": FENCE_PASSWORD,
                   "devices": [{"name": "ipmi", "password": FENCE_PASSWORD}]},
           message=f'added <fencedevice name="apc" passwd="{FENCE_PASSWORD}"/> and passwd={FENCE_PASSWORD}')
    entry = AuditEntry.objects.get()
    assert FENCE_PASSWORD not in str(entry.detail) + entry.message + entry.target
    assert entry.detail["passwd"] == MASK and entry.detail["ipaddr"] == "10.0.0.9"
    html = audit_page(people["client"])
    assert "fence.add" in html and "apc" in html
    assert FENCE_PASSWORD not in html
    assert FENCE_PASSWORD not in audit_page(people["client"], cluster="alpha", action="fence.add")


def test_audit_page_is_for_administrators(people: dict[str, Any]) -> None:
    record(people["admin"], "service.enable", cluster="alpha", target="service:web")
    viewer = Client()
    viewer.force_login(people["viewer"])
    assert viewer.get(reverse("console:audit")).status_code == 403
    assert Client().get(reverse("console:audit")).status_code == 302
    assert reverse("console:audit") not in viewer.get(reverse("console:overview")).content.decode()


def test_columns_result_classes_and_filters(people: dict[str, Any]) -> None:
    admin, viewer = people["admin"], people["viewer"]
    record(admin, "service.enable", cluster="alpha", target="service:web", message="started on n1")
    record(viewer, "service.relocate", cluster="alpha", target="service:db", result="failed",
           message="no node may run it")
    record(viewer, "config.change", cluster="beta", target="fencedevice apc", result="refused",
           message="you may not change the configuration")
    html = audit_page(people["client"])
    rows = re.findall(r"<tr>\s*<td class=\"mono\">.*?</tr>", html, re.S)
    assert len(rows) == 3
    newest = rows[0]
    for text in ("watcher", "beta", "config.change", "fencedevice apc", "st-warn", "refused",
                 "you may not change the configuration"):
        assert text in newest
    assert 'class="st st-bad">failed' in html and 'class="st st-ok">ok' in html
    by_cluster = audit_rows(people["client"], cluster="alpha")
    assert "service.enable" in by_cluster and "config.change" not in by_cluster
    by_user = audit_rows(people["client"], user="watcher")
    assert "service.relocate" in by_user and "service.enable" not in by_user
    by_action = audit_rows(people["client"], action="service.enable")
    assert "started on n1" in by_action and "no node may run it" not in by_action
    by_result = audit_rows(people["client"], result="failed")
    assert "service.relocate" in by_result and "service.enable" not in by_result
    assert "No audit entries match" in audit_page(people["client"], user="nobody")
    # the filter form offers what the log holds
    assert '<option value="beta"' in html and '<option value="service.relocate"' in html


def test_paging_fifty_to_a_page_keeping_the_filters(people: dict[str, Any]) -> None:
    AuditEntry.objects.bulk_create([AuditEntry(username="root", cluster_name="alpha", action="probe",
                                               target=f"t{i:03}") for i in range(120)])
    record(people["admin"], "other", cluster="beta")
    first = audit_page(people["client"], cluster="alpha")
    assert first.count('<td class="mono"><time') == 50
    assert "Page 1 of 3" in first and "120 entries" in first
    assert "cluster=alpha&amp;page=2" in first
    third = audit_page(people["client"], cluster="alpha", page="3")
    assert third.count('<td class="mono"><time') == 20 and "Page 3 of 3" in third
    assert audit_page(people["client"], cluster="alpha", page="junk").count('<td class="mono"><time') == 50


def test_user_changes_are_audited_with_who_and_what(people: dict[str, Any]) -> None:
    client, alpha = people["client"], people["alpha"]
    client.post(reverse("console:user_add"), {"username": "op", "password1": "op-pass-1234",
                                              "password2": "op-pass-1234"})
    op = User.objects.get(username="op")
    client.post(reverse("console:user_edit", args=[op.pk]), {f"grant-{alpha.pk}": ["service_cmd"]})
    client.post(reverse("console:user_delete", args=[op.pk]))
    entries = list(AuditEntry.objects.order_by("id").values_list("username", "action", "target", "result"))
    assert entries == [("root", "user.add", "op", "ok"), ("root", "user.rights", "op", "ok"),
                       ("root", "user.delete", "op", "ok")]
    html = audit_page(people["client"], action="user.rights")
    assert "alpha: service_cmd, view" in html


def test_django_admin_shows_the_log_read_only(people: dict[str, Any]) -> None:
    entry = record(people["admin"], "service.enable", cluster="alpha", target="service:web")
    client = people["client"]
    assert client.get("/admin/audit/auditentry/").status_code == 200
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "forged", "result": "ok"})
    entry.refresh_from_db()
    assert entry.action == "service.enable"
    assert client.get("/admin/access/clustergrant/").status_code == 200
