"""The console in a real browser (Playwright driving Debian's Chromium) against `manage.py demo`: a live server
with a 3-node lab cluster, daphne, the Celery worker over the embedded Redis and the watcher.

Log in; see the cluster; relocate the web service from one page and watch another page update by itself; edit a
failover domain and see the version increase on every node; roll back; a view-only user cannot act. Screenshots
of the main pages go to artifacts/screenshots/ (git-ignored)."""
from __future__ import annotations

import os
import re

import pytest

from cluster_conf import ClusterConf
from tests.luci_stack import CHROMIUM, REPO, Stack, start, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM} "
                       "(apt-get install chromium; .ci/run installs it)"),
]
SHOTS = REPO / "artifacts" / "screenshots"
SERVICE = "service:webservice"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    stack = start(tmp_path_factory.mktemp("luci-stack"))
    try:
        yield stack
    finally:
        code = stack.stop()
        assert code == 0, "manage.py demo did not stop cleanly:\n" + "\n".join(stack.output[-30:])


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # playwright's sync API runs a loop in this thread
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def login(browser, stack: Stack, username: str, password: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(stack.url)
    page.wait_for_url(re.compile(r"/login/"))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(stack.url)
    return page


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def cluster_url(page, stack: Stack, tab: str) -> str:  # type: ignore[no-untyped-def]
    page.goto(stack.url)
    href = page.locator("table.overview a").first.get_attribute("href")
    return stack.url.rstrip("/") + href.rstrip("/") + f"/{tab}/"


def owner(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-service="{SERVICE}"] td').nth(2).inner_text().strip()


def node_versions(stack: Stack) -> dict[str, int | None]:
    from ricci_agent.lab import Lab

    found = {}
    for node in Lab(stack.lab_dir).nodes:
        found[node.name] = ClusterConf.load(node.root / "etc/cluster/cluster.conf").config_version
    return found


def test_admin_sees_the_cluster_and_the_page_follows_a_relocation(stack: Stack, browser) -> None:  # type: ignore[no-untyped-def]
    page = login(browser, stack, stack.username, stack.password)
    row = page.locator("table.overview tbody tr").first
    assert "labcluster" in row.inner_text()
    wait_until(lambda: "quorate" in page.locator("table.overview tbody tr").first.inner_text(), 60,
               what="the overview showing the cluster quorate")
    shot(page, "overview")
    watcher = page.context.new_page()
    watcher.goto(cluster_url(page, stack, "services"))
    wait_until(lambda: watcher.locator(f'tr[data-service="{SERVICE}"]').count() and owner(watcher).startswith("node"),
               90, what="the web service shown with an owner")
    wait_until(lambda: "started" in watcher.locator(f'tr[data-service="{SERVICE}"]').inner_text(), 90,
               what="the web service started")
    shot(watcher, "services")
    watcher.evaluate("window.__notReloaded = true")
    before = owner(watcher)
    target = next(n for n in ("node1", "node2", "node3") if n != before)
    actor = page.context.new_page()
    actor.goto(cluster_url(page, stack, "services"))
    form = actor.locator(f'tr[data-service="{SERVICE}"] form').filter(has=actor.locator('input[value="relocate"]'))
    form.locator("select").select_option(target)
    form.get_by_role("button", name="Relocate").click()
    actor.wait_for_load_state()
    wait_until(lambda: owner(watcher) == target, 30, what=f"the open page showing {SERVICE} on {target}")
    assert watcher.evaluate("window.__notReloaded") is True, "the page was reloaded instead of updated in place"
    audit = page.context.new_page()
    audit.goto(stack.url + "audit/")
    assert "relocate" in audit.locator("main").inner_text().lower()
    shot(audit, "audit")
    for tab in ("nodes", "fence", "resources", "configure", "events", "whatif", "logs"):
        page.goto(cluster_url(page, stack, tab))
        assert page.locator("nav.tabs a.active").count() == 1
        shot(page, tab)
    page.context.close()


def test_domain_edit_reaches_every_node_and_rolls_back(stack: Stack, browser) -> None:  # type: ignore[no-untyped-def]
    page = login(browser, stack, stack.username, stack.password)
    before = node_versions(stack)
    assert len(set(before.values())) == 1, before
    version = next(iter(before.values()))
    page.goto(cluster_url(page, stack, "domains"))
    shot(page, "domains")
    page.locator("summary", has_text="Edit labdomain").click()
    edit = page.locator("details", has=page.locator("summary", has_text="Edit labdomain")).locator("form")
    box = edit.get_by_label("No failback")
    box.set_checked(not box.is_checked())
    edit.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    wait_until(lambda: set(node_versions(stack).values()) == {version + 1}, 60,
               what=f"version {version + 1} on every node")
    nodes = page.context.new_page()
    nodes.goto(cluster_url(page, stack, "nodes"))
    wait_until(lambda: nodes.locator("[data-config-version]").first.get_attribute("data-config-version")
               == str(version + 1), 30, what="the page showing the new version")
    page.goto(cluster_url(page, stack, "history"))
    shot(page, "history")
    rollback = page.locator(f"#rollback-{version}")
    rollback.locator('input[name="reason"]').fill("browser test: undo the failback change")
    rollback.locator('input[name="confirm"]').check()
    rollback.get_by_role("button", name=f"Roll back to version {version}").click()
    page.wait_for_load_state()
    shot(page, "operation")
    wait_until(lambda: set(node_versions(stack).values()) == {version + 2}, 60,
               what=f"version {version + 2} (the rollback) on every node")
    from ricci_agent.lab import Lab

    node = Lab(stack.lab_dir).nodes[0]
    rolled = ClusterConf.load(node.root / "etc/cluster/cluster.conf")
    history = node.root / "var/lib/cluster/history"
    old = sorted(history.glob(f"*{version}*"))
    assert old, f"version {version} is not in {history}"
    from cluster_conf.diff import diff

    changes = diff(ClusterConf.load(old[0]), rolled)
    assert [c for c in changes.to_text().splitlines() if "config_version" not in c] == [], changes.to_text()
    page.context.close()


def test_a_view_only_user_cannot_act(stack: Stack, browser) -> None:  # type: ignore[no-untyped-def]
    added = stack.manage("luci_user", "add", "viewer", "--password-stdin", stdin="viewer-password-1\n")
    assert added.returncode == 0, added.stderr
    granted = stack.manage("luci_user", "grant", "viewer", "labcluster", "view")
    assert granted.returncode == 0, granted.stderr
    page = login(browser, stack, "viewer", "viewer-password-1")
    services = cluster_url(page, stack, "services")
    page.goto(services)
    wait_until(lambda: page.locator(f'tr[data-service="{SERVICE}"]').count(), 30, what="the service row")
    assert page.get_by_role("button", name="Relocate").count() == 0
    assert page.locator("main form[method=post]").count() == 0
    shot(page, "services-viewer")
    page.goto(cluster_url(page, stack, "domains"))
    assert page.locator("main form[method=post]").count() == 0
    token = page.context.cookies()
    csrf = next((c["value"] for c in token if c["name"] == "csrftoken"), "")
    answer = page.request.post(services.replace("/services/", "/services/command/"),
                               form={"service": SERVICE, "command": "disable"},
                               headers={"X-CSRFToken": csrf, "Referer": services})
    assert answer.status == 403
    page.context.close()
