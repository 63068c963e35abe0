"""The REST API's contract: schemathesis over the WHOLE OpenAPI document (/api/schema/) against the live app (in
process, through Django's WSGI handler) with a real 3-node lab cluster registered: agents and cluster daemons
running, the lab's web service started, its status read from the nodes.

Every operation gets generated requests (valid and invalid parameters, headers and bodies; paths naming the lab's
real cluster, nodes, service, domain, fence device and resources, and random ones) and every answer must have: no
5xx, a status code the operation documents, a Content-Type it documents, a body conforming to the documented schema.

Profiles: `make test` runs a quick one (API_CONTRACT_EXAMPLES, default 10 examples per operation, fixed seed);
`make soak` sets API_SOAK=1 (API_SOAK_EXAMPLES, default 200, random seed: a failure prints how to reproduce it).

The token's user holds view, config, service_cmd and node_cmd on the lab cluster and no global right, nor
membership: cluster create/import and node add/delete answer 403 without connecting anywhere. Node actions on the
lab's real nodes are limited to `join` (fence, reboot and leave would take the lab apart under the other
operations); the other actions are still generated, on random node names. The network rule is enforced too: while
a request runs, a connection to anything but loopback (or a Unix socket) raises, which would show as a 5xx.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -r "
                                                          "requirements-dev.txt)")
pytest.importorskip("paramiko", reason="the lab needs paramiko (pip install -e .[node])")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SOAK = bool(os.environ.get("API_SOAK"))
EXAMPLES = int(os.environ.get("API_SOAK_EXAMPLES", "200") if SOAK else os.environ.get("API_CONTRACT_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
RIGHTS = {"view", "config", "service_cmd", "node_cmd"}  # not membership, not remove; no global right
CLUSTER = "contract"
MUST_ANSWER_200 = ["GET /api/v1/clusters/{cluster}/status/", "GET /api/v1/clusters/{cluster}/nodes/",
                   "GET /api/v1/clusters/{cluster}/services/", "GET /api/v1/clusters/{cluster}/config/",
                   "GET /api/v1/clusters/{cluster}/domains/", "GET /api/v1/tokens/"]

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# -- the schema, as schemathesis sees it ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def contract() -> Any:
    """The document /api/schema/ serves, generated in process (test_the_served_schema_is_the_one_tested checks the
    served one, loaded with a token, is the same). Requests go to the WSGI application, in process."""
    from drf_spectacular.generators import SchemaGenerator

    from luci_web.wsgi import application

    document = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document, default=str)))
    schema.app = application
    return schema


# schemathesis' own pytest integration does not work with pytest 9.2 (schema.parametrize gives every item the same
# node id, so results collapse; from_fixture fails on Function._nodeid), so each operation is a subtest running its
# own Hypothesis search over schemathesis' strategies for that operation.
def operations(schema: Any) -> dict[str, Any]:
    return {result.ok().label: result.ok() for result in schema.get_all_operations()}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the network rule ------------------------------------------------------------------------------------------------
def loopback_only(address: Any) -> None:
    """Refuse a connection to anything but 127.0.0.0/8, ::1 or a Unix socket (a host name is resolved first)."""
    if isinstance(address, (str, bytes)):
        return  # AF_UNIX
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    if not ip.is_loopback:
        raise ConnectionRefusedError(f"test network rule: no connection to {host} (only 127.0.0.0/8)")


@pytest.fixture
def loopback_network(monkeypatch: pytest.MonkeyPatch) -> None:
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        loopback_only(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        loopback_only(address)
        return connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


def test_the_network_rule_refuses_other_addresses(loopback_network: None) -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="network rule"):
        sock.connect(("192.0.2.1", 9))


# -- the lab and luci ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three lab nodes with their daemons (cman, rgmanager) and the lab's web service; stopped at the end."""
    from ricci_agent.lab import Lab, free_block, node_names
    from tests.ricci_fixtures import tear_down

    lab = Lab(tmp_path_factory.mktemp("contract") / "lab")
    try:
        lab.create(node_names(3), CLUSTER, free_block(3), 11111)
        lab.up()
        yield lab
    finally:
        tear_down(lab)


@pytest.fixture(scope="module")
def luci_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """luci's own files for the whole module: its ricci key is made once."""
    return tmp_path_factory.mktemp("luci")


@pytest.fixture
def live_cluster(running_lab: Any, settings: Any, luci_home: Path) -> Iterator[Any]:
    """The lab registered in luci, with its status read from the nodes once the web service runs."""
    from luci_web.clusters import gateway
    from luci_web.clusters.status import read_status
    from tests.luci_fixtures import registered
    from tests.ricci_fixtures import wait_until

    with registered(running_lab, settings, luci_home) as cluster:
        nodes = list(cluster.nodes.all())

        def web_started() -> bool:
            status = gateway.call(nodes[0], "rgmanager.status")
            return any(s.get("name") == "service:webservice" and s.get("state_str") == "started"
                       for s in status.get("services") or [])

        wait_until("the lab's web service started", web_started, timeout=120, step=0.5)
        cluster.status = read_status(nodes, cluster.name)
        cluster.save()
        yield cluster


@pytest.fixture
def luci(live_cluster: Any) -> dict[str, Any]:
    """The token of the user under test and the real names the lab's cluster holds, so that requests reach the
    handlers instead of stopping at 404: nodes, service, domain, fence device, resources, config versions, a second
    token of the same user (DELETE /tokens/{id}/ may revoke it) and another user's token (404 for this one)."""
    from cluster_conf.model import view
    from luci_web.api import tokens
    from luci_web.clusters import configs
    from ricci_agent.lab import FAILOVER_DOMAIN, FENCE_DEVICE
    from tests.luci_fixtures import user_with

    user = user_with("contract", live_cluster, RIGHTS)
    token = tokens.issue(user, "schemathesis")[1]
    spare = tokens.issue(user, "spare")[0]
    other = tokens.issue(user_with("other", live_cluster, {"view"}), "other's")[0]
    current = configs.fetch(live_cluster)
    resources = [(r.type, r.key) for r in view(current.conf).resources if r.key]
    return {"token": token, "cluster": live_cluster.name, "nodes": [n.name for n in live_cluster.nodes.all()],
            "services": ["webservice", "service:webservice"], "domain": FAILOVER_DOMAIN, "fence_device": FENCE_DEVICE,
            "resources": resources, "versions": [1, current.version], "token_ids": [spare.pk, other.pk, 999_999_999]}


def real_path_parameters(operation: Any, names: dict[str, Any]) -> list[dict[str, Any]]:
    """Path parameters naming what exists in the lab's cluster (the rest of the path is generated)."""
    params = {p.name for p in operation.path_parameters}
    base = {"cluster": names["cluster"]} if "cluster" in params else {}
    if "action" in params and "node" in params:  # node actions: only join on a real node (see the docstring)
        return [base, *({**base, "node": n, "action": "join"} for n in names["nodes"])]
    choices: list[dict[str, Any]] = [base]
    if "node" in params:
        choices = [{**base, "node": n} for n in names["nodes"]]
    elif "service" in params:
        choices = [{**base, "service": s} for s in names["services"]]
    elif "rtype" in params:
        choices = [base, *({**base, "rtype": t, "key": k} for t, k in names["resources"])]
    elif "name" in params:
        where = "domain" if "/domains/" in operation.path else "fence_device"
        choices = [{**base, "name": names[where]}, base]
    elif "version" in params:
        choices = [{**base, "version": v} for v in names["versions"]]
    elif "id" in params:
        choices = [{"id": i} for i in names["token_ids"]]
    return [c for c in choices if c] or [{}]


def cases(operation: Any, names: dict[str, Any]) -> Any:
    """Valid and invalid requests for the operation, on real and on random path parameters (a random token id is
    never used: it could revoke the token under test)."""
    real = st.sampled_from(real_path_parameters(operation, names))
    strategies = [real.flatmap(lambda p, mode=mode: operation.as_strategy(mode, path_parameters=p or None))
                  for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    if "id" not in {p.name for p in operation.path_parameters}:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE))
    return st.one_of(strategies)


# -- the tests -------------------------------------------------------------------------------------------------------
def test_the_served_schema_is_the_one_tested_and_needs_authentication(luci: dict[str, Any], contract: Any) -> None:
    from django.test import Client

    from luci_web.wsgi import application

    served = schemathesis.openapi.from_wsgi("/api/schema/", application, headers=auth(luci["token"]))
    assert served.raw_schema["paths"] == contract.raw_schema["paths"]
    assert served.raw_schema["components"] == contract.raw_schema["components"]
    assert len(operations(contract)) >= 20, sorted(operations(contract))
    anonymous = Client().get("/api/schema/", HTTP_HOST="127.0.0.1")
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/problem+json"


def run_order(label: str) -> tuple[int, str]:
    """Reads first, then changes, deletes last: a delete of the lab's real service or domain early on would leave
    the operations after it only 404s to answer."""
    method = label.split(" ", 1)[0]
    return ({"GET": 0, "DELETE": 2}.get(method, 1), label)


def test_every_operation_answers_as_documented(luci: dict[str, Any], contract: Any, loopback_network: None,
                                               subtests: pytest.Subtests) -> None:
    """One test with a subtest per operation: the lab and luci's rows are set up once (a setup per operation cost
    about 6 s each), and the changes made by one operation stay for the next ones, as on a real server. The status
    codes seen are printed (pytest -s), and the lab's main reads must have answered 200 at least once: the
    requests reached the real handlers, not only the 404 of a random path."""
    seen: dict[str, Counter[int]] = {}
    every = operations(contract)
    for label in sorted(every, key=run_order):
        operation = every[label]
        codes = seen.setdefault(label, Counter())

        @given(case=cases(operation, luci))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: Any) -> None:
            response = case.call_and_validate(headers=auth(luci["token"]), checks=CHECKS)
            codes[response.status_code] += 1  # noqa: B023 (run before the loop moves on)

        with subtests.test(msg=label):
            answers_as_documented()
    for label, codes in seen.items():
        print(f"{label:<70} {' '.join(f'{c}x{n}' for c, n in sorted(codes.items()))}")
    for label in MUST_ANSWER_200:
        assert seen[label][200], (label, seen[label])
