"""Validation: one test per check (code, severity, line), a clean configuration, and property tests."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from cluster_conf import ClusterConf, rng, structure
from cluster_conf.codes import CODES, EDITING_CODES
from cluster_conf.reports import Severity
from cluster_conf.validation import validate

FENCED_NODES = """
  <clusternodes>
    <clusternode name="n1" nodeid="1"><fence><method name="ipmi"><device name="ipmi-n1"/></method></fence></clusternode>
    <clusternode name="n2" nodeid="2"><fence><method name="ipmi"><device name="ipmi-n2"/></method></fence></clusternode>
    <clusternode name="n3" nodeid="3"><fence><method name="ipmi"><device name="ipmi-n3"/></method></fence></clusternode>
  </clusternodes>
  <fencedevices>
    <fencedevice name="ipmi-n1" agent="fence_ipmilan" ipaddr="10.0.0.101" login="admin" passwd="topsecret"/>
    <fencedevice name="ipmi-n2" agent="fence_ipmilan" ipaddr="10.0.0.102" login="admin" passwd="topsecret"/>
    <fencedevice name="ipmi-n3" agent="fence_ipmilan" ipaddr="10.0.0.103" login="admin" passwd="topsecret"/>
  </fencedevices>"""

CLEAN_RM = """
  <rm>
    <failoverdomains>
      <failoverdomain name="web" ordered="1" restricted="1">
        <failoverdomainnode name="n1" priority="1"/>
        <failoverdomainnode name="n2" priority="2"/>
      </failoverdomain>
    </failoverdomains>
    <resources>
      <ip address="10.0.0.50" monitor_link="1"/>
      <fs name="data" mountpoint="/srv" device="/dev/vg/data" fstype="ext4"/>
    </resources>
    <service name="www" domain="web" recovery="relocate">
      <ip ref="10.0.0.50"/>
      <fs ref="data"><script name="httpd" file="/etc/init.d/httpd"/></fs>
    </service>
    <service name="db" depend="service:www" max_restarts="2" restart_expire_time="10m">
      <ocf name="pg" provider="heartbeat" type="pgsql" pgdata="/var/lib/pgsql"/>
    </service>
    <vm name="guest1" domain="web" migrate="live"/>
  </rm>"""

CLEAN = f"""<?xml version="1.0"?>
<cluster name="alpha" config_version="3">
  <cman expected_votes="3"/>
  <fence_daemon post_join_delay="20"/>
  <totem token="10000"/>{FENCED_NODES}{CLEAN_RM}
</cluster>
"""


def cluster(body: str, attrs: str = 'name="alpha" config_version="1"') -> str:
    return f'<?xml version="1.0"?>\n<cluster {attrs}>\n{body}\n</cluster>\n'


def with_rm(rm_body: str, extra: str = "") -> str:
    return cluster(f"{FENCED_NODES}\n{extra}\n  <rm>\n{rm_body}\n  </rm>")


def line_of(text: str, needle: str) -> int:
    index = text.index(needle)
    return text.count("\n", 0, index) + 1


def reports_for(text: str, **kwargs: object):
    return validate(ClusterConf.from_string(text), **kwargs)  # type: ignore[arg-type]


# (id, document, expected code, a unique piece of text on the line the report must point at)
CASES: list[tuple[str, str, str, str]] = [
    # -- schema ----------------------------------------------------------------------------------------------
    ("attr-missing", cluster('<logging><logging_daemon subsys="CMAN"/></logging>'), "SCHEMA_ATTRIBUTE_MISSING",
     "<logging_daemon"),
    ("value-invalid", cluster('<cman port="99999"/>'), "SCHEMA_VALUE_INVALID", "<cman"),
    ("choice-invalid", with_rm('<service name="s" recovery="reboot"/>'), "SCHEMA_VALUE_INVALID", 'recovery="reboot"'),
    ("misplaced", cluster('<clusternode name="x" nodeid="1"/>'), "SCHEMA_ELEMENT_MISPLACED", "<clusternode"),
    ("misplaced-resource", with_rm('<ip address="10.0.0.9"/>'), "SCHEMA_ELEMENT_MISPLACED", '<ip address="10.0.0.9"'),
    ("text", cluster("<cman>hello</cman>"), "SCHEMA_TEXT_NOT_ALLOWED", "<cman>"),
    ("version-missing", cluster("", 'name="alpha"'), "VERSION_MISSING", "<cluster"),
    ("version-not-int", cluster("", 'name="alpha" config_version="1.0"'), "VERSION_NOT_INTEGER", "<cluster"),
    ("name-missing", cluster("", 'config_version="1"'), "CLUSTER_NAME_MISSING", "<cluster"),
    ("name-empty", cluster("", 'name="" config_version="1"'), "CLUSTER_NAME_MISSING", "<cluster"),
    ("votes", cluster('<clusternodes><clusternode name="n1" nodeid="1" votes="256"/></clusternodes>'),
     "NODE_VOTES_INVALID", "<clusternodes>"),
    ("no-agent", cluster('<fencedevices><fencedevice name="f"/></fencedevices>'), "FENCEDEVICE_NO_AGENT",
     "<fencedevices>"),
    ("priority", with_rm('<failoverdomains><failoverdomain name="d" ordered="1">\n'
                         '<failoverdomainnode name="n1" priority="0"/></failoverdomain></failoverdomains>'),
     "DOMAIN_PRIORITY_INVALID", 'priority="0"'),
    ("heuristic", cluster('<quorumd label="q"><heuristic score="1"/></quorumd>'), "HEURISTIC_NO_PROGRAM",
     "<quorumd"),
    ("poll", cluster('<rm status_poll_interval="0"/>'), "RM_POLL_INTERVAL_INVALID", "<rm"),
    ("time", with_rm('<service name="s" restart_expire_time="10x"/>'), "TIME_VALUE_INVALID", '<service name="s"'),
    ("special-time", with_rm('<service name="s">\n<script name="x" file="/x" __max_failures="3" '
                             '__failure_expire_time="5y"/></service>'), "TIME_VALUE_INVALID", "<script"),
    ("param-missing", with_rm('<service name="s">\n<fs name="f" mountpoint="/m"/></service>'),
     "RESOURCE_PARAM_MISSING", "<fs"),
    ("primary-missing", with_rm('<resources>\n<ip monitor_link="1"/></resources>'), "RESOURCE_PARAM_MISSING",
     "<ip"),
    ("nested-service", with_rm('<service name="a">\n<service name="b"/></service>'), "SERVICE_NOT_TOP_LEVEL",
     '<service name="b"'),
    ("legacy", cluster('<nodes><node name="a"/></nodes>'), "LEGACY_ELEMENT", "<nodes>"),
    ("legacy-rg", with_rm('<resourcegroup name="x"/>'), "LEGACY_ELEMENT", "<resourcegroup"),
    ("legacy-group", with_rm('<resources>\n<group name="x"/></resources>'), "LEGACY_ELEMENT", '<group name="x"'),
    # -- semantic ----------------------------------------------------------------------------------------------
    ("section-dup", cluster("<cman/>\n<cman/>"), "SECTION_DUPLICATE", "<cman/>\n</cluster>"),
    ("node-name-dup", cluster('<clusternodes><clusternode name="a" nodeid="1"/>\n'
                              '<clusternode name="a" nodeid="2"/></clusternodes>'), "NODE_NAME_DUPLICATE",
     'nodeid="2"'),
    ("nodeid-dup", cluster('<clusternodes><clusternode name="a" nodeid="1"/>\n'
                           '<clusternode name="b" nodeid="1"/></clusternodes>'), "NODEID_DUPLICATE", '"b"'),
    ("nodeid-missing", cluster('<clusternodes>\n<clusternode name="a"/></clusternodes>'), "NODEID_MISSING",
     '"a"'),
    ("fence-undefined", cluster('<clusternodes><clusternode name="a" nodeid="1"><fence><method name="1">\n'
                                '<device name="nope"/></method></fence></clusternode></clusternodes>'),
     "FENCE_DEVICE_UNDEFINED", '"nope"'),
    ("fd-dup", cluster('<fencedevices><fencedevice name="f" agent="fence_apc"/>\n'
                       '<fencedevice name="f" agent="fence_wti"/></fencedevices>'), "FENCEDEVICE_NAME_DUPLICATE",
     "fence_wti"),
    ("method-dup", cluster('<clusternodes><clusternode name="a" nodeid="1"><fence><method name="1"/>\n'
                           '<method name="1"/></fence></clusternode></clusternodes>'), "METHOD_NAME_DUPLICATE",
     '<method name="1"/></fence>'),
    ("domain-dup", with_rm('<failoverdomains><failoverdomain name="d"/>\n<failoverdomain name="d"/>'
                           "</failoverdomains>"), "DOMAIN_NAME_DUPLICATE", '<failoverdomain name="d"/></f'),
    ("domain-node-dup", with_rm('<failoverdomains><failoverdomain name="d"><failoverdomainnode name="n1"/>\n'
                                '<failoverdomainnode name="n1"/></failoverdomain></failoverdomains>'),
     "DOMAIN_NODE_DUPLICATE", '<failoverdomainnode name="n1"/></f'),
    ("domain-node-unknown", with_rm('<failoverdomains><failoverdomain name="d">\n'
                                    '<failoverdomainnode name="blue"/></failoverdomain></failoverdomains>'),
     "DOMAIN_NODE_UNKNOWN", '"blue"'),
    ("service-domain", with_rm('<service name="s" domain="nowhere"/>'), "SERVICE_DOMAIN_UNDEFINED", "nowhere"),
    ("service-dup", with_rm('<service name="s"/>\n<service name="s" autostart="0"/>'), "SERVICE_NAME_DUPLICATE",
     'autostart="0"'),
    ("depend", with_rm('<service name="s" depend="t"/>'), "DEPEND_UNRESOLVED", 'depend="t"'),
    ("depend-cycle", with_rm('<service name="a" depend="service:b"/>\n<service name="b" depend="service:a"/>'),
     "DEPEND_CYCLE", '<service name="a"'),
    ("ref", with_rm('<service name="s">\n<ip ref="10.9.9.9"/></service>'), "RESOURCE_REF_UNRESOLVED",
     '<ip ref="10.9.9.9"'),
    ("key-dup", with_rm('<resources><script name="x" file="/a"/>\n<script name="x" file="/b"/></resources>'),
     "RESOURCE_KEY_DUPLICATE", 'file="/b"'),
    ("unique-dup", with_rm('<service name="s"><fs name="a" mountpoint="/m" device="/dev/a"/>\n'
                           '<fs name="b" mountpoint="/m" device="/dev/b"/></service>'), "RESOURCE_UNIQUE_DUPLICATE",
     '<fs name="b"'),
    ("max-instances", with_rm('<resources><fs name="f" mountpoint="/m" device="/d"/></resources>\n'
                              '<service name="a"><fs ref="f"/></service>\n<service name="b"><fs ref="f"/></service>'),
     "RESOURCE_MAX_INSTANCES", '<service name="b"'),
    ("child-forbidden", with_rm('<service name="s"><ip address="10.0.0.60">\n'
                                '<nfsclient name="c" target="*"/></ip></service>'), "RESOURCE_CHILD_FORBIDDEN",
     "<nfsclient"),
    ("threshold", with_rm('<service name="s">\n<script name="x" file="/x" __max_failures="3"/></service>'),
     "THRESHOLD_INCOMPLETE", "<script"),
    ("two-node", cluster('<cman two_node="1" expected_votes="1"/>\n<clusternodes>'
                         '<clusternode name="a" nodeid="1"/><clusternode name="b" nodeid="2" votes="2"/>'
                         "</clusternodes>"), "TWO_NODE_INVALID", "<cman"),
    ("multicast-unicast", cluster('<cman><multicast addr="10.1.1.1"/></cman>'), "MULTICAST_ADDR_INVALID", "<multicast"),
    (
        "totem-mcast-garbage",
        cluster('<totem><interface ringnumber="0" mcastaddr="not-an-ip"/></totem>'),
        "MULTICAST_ADDR_INVALID",
        "<interface",
    ),
    ("qdisk-both", cluster('<quorumd label="q" device="/dev/sdq"/>'), "QDISK_DEVICE_LABEL", "<quorumd"),
    ("qdisk-none", cluster("<quorumd/>"), "QDISK_DEVICE_LABEL", "<quorumd"),
    ("unknown-element", cluster("<clusternodes>\n<clusternodex/></clusternodes>"), "UNKNOWN_ELEMENT",
     "<clusternodex"),
    ("unknown-attr", cluster('<cman two_nodes="1"/>'), "UNKNOWN_ATTRIBUTE", "<cman"),
    ("unknown-type", with_rm('<service name="s">\n<glusterfs name="g"/></service>'), "UNKNOWN_RESOURCE_TYPE",
     "<glusterfs"),
    ("service-vm-clash", with_rm('<service name="x"/>\n<vm name="x"/>'), "SERVICE_VM_NAME_CLASH", '<vm name="x"'),
    # -- lint --------------------------------------------------------------------------------------------------
    ("no-nodes", cluster("<clusternodes/>"), "NO_NODES", "<clusternodes/>"),
    ("no-fencedevices", cluster('<clusternodes>\n<clusternode name="a" nodeid="1"/></clusternodes>'),
     "NO_FENCE_DEVICES", "<cluster "),
    ("node-not-fenced", cluster(FENCED_NODES.replace("</clusternodes>", '<clusternode name="n4" nodeid="4"/>\n'
                                                     "</clusternodes>")), "NODE_NOT_FENCED", '"n4"'),
    ("method-empty", cluster(FENCED_NODES.replace('<method name="ipmi"><device name="ipmi-n3"/></method>',
                                                  '<method name="ipmi"/>')), "METHOD_NO_DEVICES", '"n3"'),
    ("fd-unused", cluster(FENCED_NODES.replace("</fencedevices>", '<fencedevice name="spare" agent="fence_apc"/>'
                                               "\n</fencedevices>")), "FENCE_DEVICE_UNUSED", '"spare"'),
    ("fence-manual", cluster(FENCED_NODES.replace('"ipmi-n3" agent="fence_ipmilan"', '"ipmi-n3" agent="fence_manual"')),
     "FENCE_MANUAL", 'agent="fence_manual"'),
    ("clean-start", cluster('<fence_daemon clean_start="1"/>'), "CLEAN_START", "<fence_daemon"),
    ("post-join", cluster(f'<fence_daemon post_join_delay="0"/>{FENCED_NODES}'), "POST_JOIN_DELAY_LOW",
     "<fence_daemon"),
    ("even", cluster('<clusternodes><clusternode name="a" nodeid="1"/><clusternode name="b" nodeid="2"/>'
                     "</clusternodes>"), "EVEN_NODE_COUNT", "<cluster "),
    ("ev-unreachable", cluster(f'<cman expected_votes="7"/>{FENCED_NODES}'), "EXPECTED_VOTES_UNREACHABLE", "<cman"),
    ("ev-low", cluster(f'<cman expected_votes="1"/>{FENCED_NODES}'), "EXPECTED_VOTES_LOW", "<cman"),
    ("two-node-qdisk", cluster('<cman two_node="1" expected_votes="1"/><quorumd label="q"/>\n<clusternodes>'
                               '<clusternode name="a" nodeid="1"/><clusternode name="b" nodeid="2"/></clusternodes>'),
     "TWO_NODE_WITH_QDISK", "<cman"),
    ("qdisk-votes", cluster('<quorumd label="q"/>\n<clusternodes><clusternode name="a" nodeid="1" votes="2"/>'
                            "</clusternodes>"), "QDISK_NODE_VOTES", "<quorumd"),
    ("min-score", cluster('<quorumd label="q" min_score="5"><heuristic program="ping -c1 gw" score="2"/></quorumd>'),
     "QDISK_MIN_SCORE_UNREACHABLE", "<quorumd"),
    ("qdisk-votes-low", cluster(f'<quorumd label="q" votes="1"/>{FENCED_NODES}'), "QDISK_VOTES_LOW", "<quorumd"),
    ("token", cluster('<totem token="500"/>'), "TOTEM_TOKEN_LOW", "<totem"),
    ("consensus", cluster('<totem token="5000" consensus="200"/>'), "TOTEM_CONSENSUS_LOW", "<totem"),
    ("name-long", cluster("", 'name="a-very-long-cluster-name" config_version="1"'), "CLUSTER_NAME_TOO_LONG",
     "<cluster"),
    ("names-mixed", cluster('<clusternodes>\n<clusternode name="10.0.0.1" nodeid="1"/>'
                            '<clusternode name="b" nodeid="2"/></clusternodes>'), "NODE_NAMES_MIXED", '"10.0.0.1"'),
    ("domain-empty", with_rm('<failoverdomains>\n<failoverdomain name="d" restricted="1"/></failoverdomains>'),
     "DOMAIN_EMPTY", '<failoverdomain name="d"'),
    ("prio-missing", with_rm('<failoverdomains><failoverdomain name="d" ordered="1">\n'
                             '<failoverdomainnode name="n1"/></failoverdomain></failoverdomains>'),
     "DOMAIN_PRIORITY_MISSING", '<failoverdomainnode name="n1"/>'),
    ("prio-ignored", with_rm('<failoverdomains>\n<failoverdomain name="d"><failoverdomainnode name="n1" '
                             'priority="1"/></failoverdomain></failoverdomains>'), "DOMAIN_PRIORITY_IGNORED",
     '<failoverdomain name="d"'),
    ("exclusive", with_rm('<failoverdomains><failoverdomain name="d" restricted="1"><failoverdomainnode name="n1"/>'
                          '</failoverdomain></failoverdomains>\n<service name="s" domain="d" exclusive="1"/>'),
     "EXCLUSIVE_SINGLE_NODE", '<service name="s"'),
    ("ip-dup", with_rm('<service name="a"><ip address="10.0.0.70"/></service>\n'
                       '<service name="b"><ip address="10.0.0.70/24"/></service>'), "IP_ADDRESS_DUPLICATE",
     '<service name="b"'),
    ("unused", with_rm('<resources>\n<script name="x" file="/x"/></resources>'), "RESOURCE_UNUSED", "<script"),
    ("restarts", with_rm('<service name="s" max_restarts="3"/>'), "RESTARTS_NEVER_EXPIRE", "<service"),
    ("soft", with_rm('<service name="a"/>\n<service name="b" depend="service:a" depend_mode="soft"/>'),
     "DEPEND_SOFT_IGNORED", '<service name="b"'),
    ("not-independent", with_rm('<service name="s">\n<script name="x" file="/x" __max_restarts="2" '
                                '__restart_expire_time="60"/></service>'), "THRESHOLD_NOT_INDEPENDENT", "<script"),
]


@pytest.mark.parametrize(("document", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check(document: str, code: str, needle: str) -> None:
    reports = reports_for(document)
    matching = [r for r in reports if r.code == code]
    assert matching, "\n".join(r.format("t") for r in reports)
    report = matching[0]
    assert report.severity is CODES[code].severity
    assert report.line == line_of(document, needle), report
    assert report.path and report.path.startswith("/cluster")
    assert "\n" not in report.message
    assert "topsecret" not in report.message + (report.hint or "")


def test_every_validation_code_has_a_case() -> None:
    load_codes = {
        "FILE_NOT_FOUND", "FILE_UNREADABLE", "XML_MALFORMED", "XML_TOO_LARGE", "XML_TOO_DEEP",
        "XML_ENTITY_FORBIDDEN", "XML_DOCTYPE_FORBIDDEN", "ROOT_NOT_CLUSTER", "SCHEMA_INVALID",
    }
    covered = {c[2] for c in CASES}
    validation_codes = {code for code in CODES if code not in load_codes | EDITING_CODES}
    assert validation_codes - covered == set()


def test_clean_configuration_has_no_reports() -> None:
    reports = reports_for(CLEAN, relaxng=True)
    assert reports == [], "\n".join(r.format("clean") for r in reports)
    assert rng.is_valid(ClusterConf.from_string(CLEAN))


def test_lint_can_be_turned_off() -> None:
    reports = reports_for(cluster("<clusternodes/>"), lint=False)
    assert not any(r.code == "NO_NODES" for r in reports)


def test_reports_are_sorted_by_line() -> None:
    text = with_rm('<service name="s" domain="nowhere"/>', extra='<cman port="0"/>\n<cman/>')
    lines = [r.line or 0 for r in reports_for(text)]
    assert lines == sorted(lines)


def test_secret_values_never_appear() -> None:
    text = cluster(
        '<fencedevices><fencedevice name="f" agent="fence_apc" passwd="topsecret"/>\n'
        '<fencedevice name="f" agent="fence_apc" password="topsecret" passwd_script="topsecret"/></fencedevices>\n'
        '<rm><resources><mysql name="m" passwd="topsecret" password="topsecret"/></resources></rm>'
    )
    for report in reports_for(text):
        assert "topsecret" not in f"{report.message} {report.hint} {report.path}"


def test_ocf_extra_parameters_are_not_warned_about() -> None:
    text = with_rm('<service name="s"><ocf name="x" provider="heartbeat" type="Dummy" state="/run/x"/></service>')
    assert not any(r.code == "UNKNOWN_ATTRIBUTE" for r in reports_for(text))


def test_unknown_content_is_not_looked_at() -> None:
    text = cluster('<clusternodes><clusternode name="a" nodeid="1"><com_info><clusternode/>'
                   '<eth murks="bla"/></com_info></clusternode></clusternodes>')
    codes = [r.code for r in reports_for(text) if r.is_error or r.code.startswith("UNKNOWN")]
    assert codes == ["UNKNOWN_ELEMENT"]


def test_did_you_mean_hints() -> None:
    unknown_attr = [r for r in reports_for(cluster('<cman two_nodes="1"/>')) if r.code == "UNKNOWN_ATTRIBUTE"]
    assert unknown_attr[0].hint == 'did you mean "two_node"?'
    unknown_el = [r for r in reports_for(cluster("<fencedevice/>")) if r.code == "SCHEMA_ELEMENT_MISPLACED"]
    assert "<fencedevices>" in (unknown_el[0].hint or "")


def test_messages_follow_the_admin_wording() -> None:
    nodeid = reports_for(cluster('<clusternodes>\n<clusternode name="n2" nodeid="1"/>'
                                 '<clusternode name="n3" nodeid="1"/></clusternodes>'))
    assert any(r.message == 'clusternode "n3": nodeid 1 already used by clusternode "n2"' for r in nodeid)
    missing = [r for r in reports_for(cluster('<clusternodes><clusternode name="a"/></clusternodes>'))
               if r.code == "NODEID_MISSING"]
    assert "CCS does not have a nodeid for this node, run 'ccs_tool addnodeids' to fix" in missing[0].message
    max_refs = [r for r in reports_for(dict(CASES_BY_ID)["max-instances"]) if r.code == "RESOURCE_MAX_INSTANCES"]
    assert "Warning: Max references exceeded for resource f (type fs)" in max_refs[0].message


CASES_BY_ID = [(c[0], c[1]) for c in CASES]


# -- the RelaxNG schema --------------------------------------------------------------------------------------
def test_schema_text_is_relaxng_and_compiles() -> None:
    text = rng.schema_text()
    root = etree.fromstring(text.encode())
    assert root.tag == "{http://relaxng.org/ns/structure/1.0}grammar"
    assert "interleave" not in text
    etree.RelaxNG(root)


def test_libxml2_errors_become_schema_reports() -> None:
    conf = ClusterConf.from_string(cluster('<clusternodes>\n<clusternode name="a" nodeid="x"/></clusternodes>'))
    reports = rng.validate_schema(conf)
    assert reports and all(r.code == "SCHEMA_INVALID" for r in reports)
    assert reports[0].line == 4 and "clusternode" in reports[0].message


@pytest.mark.parametrize(("document", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_relaxng_and_python_pass_agree(document: str, code: str, needle: str) -> None:
    conf = ClusterConf.from_string(document)
    assert rng.is_valid(conf) == (not structure.check(conf).schema_failed)


# -- properties ----------------------------------------------------------------------------------------------
def _generated_cluster(n_nodes: int, n_services: int, seed: int) -> str:
    rnd = random.Random(seed)
    nodes = "".join(
        f'<clusternode name="node{i}" nodeid="{i}" votes="1"><fence><method name="m">'
        f'<device name="fd{i}" port="{i}"/></method></fence></clusternode>'
        for i in range(1, n_nodes + 1)
    )
    devices = "".join(
        f'<fencedevice name="fd{i}" agent="fence_ipmilan" ipaddr="10.0.1.{i}"/>' for i in range(1, n_nodes + 1)
    )
    members = "".join(f'<failoverdomainnode name="node{i}" priority="{i}"/>' for i in range(1, n_nodes + 1))
    services = "".join(
        f'<service name="svc{s}" domain="dom" recovery="{rnd.choice(["relocate", "disable"])}">'
        f'<ip address="10.1.{s // 200}.{s % 200 + 1}"/>'
        f'<fs name="fs{s}" mountpoint="/mnt/{s}" device="/dev/vg/l{s}"><script name="sc{s}" file="/s{s}"/></fs>'
        "</service>"
        for s in range(n_services)
    )
    qdisk = '<quorumd label="qd"/>' if n_nodes % 2 == 0 and n_nodes > 2 else ""
    cman = '<cman two_node="1" expected_votes="1"/>' if n_nodes == 2 else "<cman/>"
    sections = [
        cman,
        qdisk,
        f"<clusternodes>{nodes}</clusternodes>",
        f"<fencedevices>{devices}</fencedevices>",
        '<fence_daemon post_join_delay="20"/>',
        f'<rm><failoverdomains><failoverdomain name="dom" ordered="1">{members}</failoverdomain></failoverdomains>'
        f"{services}</rm>",
    ]
    rnd.shuffle(sections)
    return cluster("\n".join(s for s in sections if s))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 9), st.integers(0, 6), st.integers(0, 2**16))
def test_generated_valid_configs_have_no_errors(n_nodes: int, n_services: int, seed: int) -> None:
    text = _generated_cluster(n_nodes, n_services, seed)
    reports = reports_for(text, relaxng=True)
    assert not [r for r in reports if r.is_error], text


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(6)), st.integers(0, 3))
def test_order_of_sections_does_not_change_the_codes(order: list[int], variant: int) -> None:
    bad_parts = [
        '<cman two_node="1" expected_votes="3"/>',
        '<clusternodes><clusternode name="a" nodeid="1"/><clusternode name="b" nodeid="1"/></clusternodes>',
        '<fencedevices><fencedevice name="f"/></fencedevices>',
        '<totem token="300" bogus="1"/>',
        '<rm><service name="s" domain="none"><ip ref="1.2.3.4"/></service></rm>',
        ["<dlm/>", "<com_info/>", '<logging to_syslog="maybe"/>', "<quorumd/>"][variant],
    ]
    reference = {r.code for r in reports_for(cluster("\n".join(bad_parts)))}
    permuted = {r.code for r in reports_for(cluster("\n".join(bad_parts[i] for i in order)))}
    assert permuted == reference


_ATTRIBUTE_VALUES = st.sampled_from(["1", "0", "-1", "yes", "no", "10m", "", " 1", "abc", "300", "65536", "2w"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["cman", "totem", "quorumd", "fence_daemon", "rm", "logging", "clusternodes"]),
            st.sampled_from(["two_node", "port", "token", "votes", "interval", "post_join_delay", "log_level",
                             "status_poll_interval", "to_syslog", "central_processing", "foo"]),
            _ATTRIBUTE_VALUES,
        ),
        max_size=6,
    ),
    st.sampled_from(["votes", "nodeid", "weight"]),
    _ATTRIBUTE_VALUES,
)
def test_relaxng_and_python_pass_agree_on_random_values(
    settings_list: list[tuple[str, str, str]], node_attr: str, node_value: str
) -> None:
    sections: dict[str, dict[str, str]] = {}
    for tag, attr, value in settings_list:
        sections.setdefault(tag, {})[attr] = value
    root = etree.Element("cluster", name="c", config_version="1")
    for tag, attrs in sections.items():
        el = etree.SubElement(root, tag, attrs)
        if tag == "clusternodes":
            etree.SubElement(el, "clusternode", {"name": "n", node_attr: node_value})
    conf = ClusterConf.from_bytes(etree.tostring(root))
    check = structure.check(conf)
    assert rng.is_valid(conf) == (not check.schema_failed), [r.format("") for r in check.reports]


def test_severity_enum_matches_registry() -> None:
    assert {c.severity for c in CODES.values()} <= {Severity.ERROR, Severity.WARNING}


def test_unrendered_template_values_get_a_template_hint() -> None:
    conf = ClusterConf.from_string('<cluster name="c" config_version="{{ version }}"><rm/></cluster>')
    (report,) = [r for r in validate(conf) if r.code == "VERSION_NOT_INTEGER"]
    assert report.hint is not None and "unrendered template" in report.hint
