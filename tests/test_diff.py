"""cluster_conf.diff: identity keys, each kind of change, order rules, secrets, JSON shape, and properties."""
from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from cluster_conf import ClusterConf
from cluster_conf.diff import DIFF_FORMAT_VERSION, ConfigDiff, diff

BASE = """<?xml version="1.0"?>
<cluster name="alpha" config_version="5">
  <cman two_node="1" expected_votes="1"/>
  <clusternodes>
    <clusternode name="n1" nodeid="1" votes="1">
      <fence>
        <method name="single"><device name="apc" port="1"/></method>
        <method name="backup"><device name="ipmi-n1"/></method>
      </fence>
    </clusternode>
    <clusternode name="n2" nodeid="2" votes="1">
      <fence>
        <method name="single"><device name="apc" port="2"/><device name="apc" port="12"/></method>
      </fence>
    </clusternode>
  </clusternodes>
  <fencedevices>
    <fencedevice name="apc" agent="fence_apc" ipaddr="10.0.0.100" login="apc" passwd="topsecret"/>
    <fencedevice name="ipmi-n1" agent="fence_ipmilan" ipaddr="10.0.0.101" passwd="ipmipass"/>
  </fencedevices>
  <rm log_level="6">
    <failoverdomains>
      <failoverdomain name="prefer-n1" ordered="1" restricted="0">
        <failoverdomainnode name="n1" priority="1"/>
        <failoverdomainnode name="n2" priority="2"/>
      </failoverdomain>
    </failoverdomains>
    <resources>
      <ip address="10.0.0.5" monitor_link="1"/>
      <script name="httpd" file="/etc/init.d/httpd"/>
    </resources>
    <service name="web" domain="prefer-n1" recovery="restart">
      <ip ref="10.0.0.5"/>
      <fs name="webdata" device="/dev/sdb1" mountpoint="/var/www" fstype="ext4">
        <nfsexport name="exports">
          <nfsclient name="world" target="*" options="ro"/>
        </nfsexport>
      </fs>
      <script ref="httpd"/>
    </service>
    <service name="db" recovery="relocate">
      <ip address="10.0.0.6"/>
      <script name="pre" file="/etc/init.d/pre"/>
      <script name="post" file="/etc/init.d/post"/>
    </service>
    <vm name="guest1" path="/etc/libvirt/qemu"/>
  </rm>
</cluster>
"""


def load(text: str) -> ClusterConf:
    return ClusterConf.from_string(text)


def edited(text: str, *replacements: tuple[str, str]) -> ClusterConf:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return load(text)


def only(d: ConfigDiff):
    assert len(d.changes) == 1, d.to_text()
    return d.changes[0]


# -- no change ---------------------------------------------------------------------------------------------
def test_same_document_is_empty():
    d = diff(load(BASE), load(BASE))
    assert d.is_empty
    assert d.to_text() == "no changes"
    assert d.affected_services() == []


def test_comments_whitespace_and_attribute_order_are_ignored():
    reformatted = BASE.replace("\n      ", "\n").replace("  ", " ")
    reformatted = reformatted.replace('name="apc" agent="fence_apc"', 'agent="fence_apc" name="apc"')
    reformatted = reformatted.replace("<rm log_level", "<!-- resource manager -->\n<rm log_level")
    reformatted = reformatted.replace('<vm name="guest1"', '<vm\n  name="guest1"')
    assert reformatted != BASE
    assert diff(load(BASE), load(reformatted)).is_empty


def test_config_version_only():
    d = diff(load(BASE), edited(BASE, ('config_version="5"', 'config_version="6"')))
    assert not d.is_empty
    assert d.version_changed and d.changes == ()
    assert d.to_text() == "config_version: 5 -> 6"
    assert d.to_dict()["config_version"] == {"old": "5", "new": "6"}


def test_config_version_is_reported_once_at_the_top():
    d = diff(load(BASE), edited(BASE, ('config_version="5"', 'config_version="7"'), ('recovery="restart"', "")))
    lines = d.to_text().splitlines()
    assert lines[0] == "config_version: 5 -> 7"
    assert sum("config_version" in line for line in lines) == 1


# -- kinds of change ---------------------------------------------------------------------------------------
def test_node_added():
    new_node = '<clusternode name="n3" nodeid="3" votes="1"/>\n  </clusternodes>'
    d = diff(load(BASE), edited(BASE, ("</clusternodes>", new_node)))
    change = only(d)
    assert (change.kind, change.key, change.tag) == ("added", "clusternode[name=n3]", "clusternode")
    assert d.to_text() == "+ clusternode[name=n3] (nodeid=3 votes=1)"
    assert [c.key for c in d.added] == ["clusternode[name=n3]"]


def test_fence_device_removed():
    d = diff(load(BASE), edited(BASE, ('<fencedevice name="ipmi-n1" agent="fence_ipmilan" ipaddr="10.0.0.101" '
                                       'passwd="ipmipass"/>', "")))
    assert only(d).kind == "removed"
    assert d.to_text() == "- fencedevice[name=ipmi-n1]"


def test_service_attribute_changed():
    d = diff(load(BASE), edited(BASE, ('recovery="restart"', 'recovery="relocate"')))
    assert d.to_text() == "~ rm/service[name=web]: recovery: restart -> relocate"
    (attr,) = only(d).changes
    assert (attr.name, attr.old, attr.new, attr.kind) == ("recovery", "restart", "relocate", "changed")
    assert d.affected_services() == ["service:web"]


def test_attribute_added_and_removed():
    d = diff(load(BASE), edited(BASE, ('restricted="0"', ""), ('<vm name="guest1"', '<vm autostart="0" name="guest1"')))
    assert d.to_text().splitlines() == [
        "~ rm/failoverdomain[name=prefer-n1]: restricted: 0 -> (unset)",
        "~ rm/vm[name=guest1]: autostart: (unset) -> 0",
    ]
    assert [c.changes[0].kind for c in d.changes] == ["removed", "added"]


def test_fence_device_parameter_inside_method():
    d = diff(load(BASE), edited(BASE, ('<device name="apc" port="1"/>', '<device name="apc" port="3"/>')))
    assert only(d).key == "clusternode[name=n1]/fence/method[name=single]/device[name=apc]"


def test_devices_with_the_same_name_are_told_apart_by_position():
    d = diff(load(BASE), edited(BASE, ('port="12"', 'port="13"')))
    assert only(d).key == "clusternode[name=n2]/fence/method[name=single]/device[name=apc][2]"


def test_nested_inline_resource_keyed_by_type_and_primary():
    d = diff(load(BASE), edited(BASE, ('options="ro"', 'options="rw"'), ('<ip address="10.0.0.6"/>',
                                                                          '<ip address="10.0.0.6" sleeptime="5"/>')))
    assert [c.key for c in d.changes] == [
        "rm/service[name=web]/fs[name=webdata]/nfsexport[name=exports]/nfsclient[name=world]",
        "rm/service[name=db]/ip[address=10.0.0.6]",
    ]


def test_renaming_a_key_is_remove_plus_add():
    d = diff(load(BASE), edited(BASE, ('<service name="db"', '<service name="database"')))
    assert [(c.kind, c.key) for c in d.changes] == [("removed", "rm/service[name=db]"),
                                                   ("added", "rm/service[name=database]")]
    assert d.affected_services() == ["service:database", "service:db"]


def test_added_subtree_is_one_change():
    block = '<service name="new"><ip address="10.0.0.9"/><script name="x" file="/x"/></service>\n  </rm>'
    d = diff(load(BASE), edited(BASE, ("</rm>", block)))
    assert [c.key for c in d.changes] == ["rm/service[name=new]"]


def test_singleton_sections_by_tag():
    d = diff(load(BASE), edited(BASE, ('<cman two_node="1"', '<cman two_node="0"'), ('log_level="6"', 'log_level="7"')))
    assert [c.key for c in d.changes] == ["cman", "rm"]


def test_section_added():
    d = diff(load(BASE), edited(BASE, ("<clusternodes>", '<totem token="21000"/>\n  <clusternodes>')))
    assert only(d).key == "totem"


def test_cluster_attributes_other_than_version():
    d = diff(load(BASE), edited(BASE, ('name="alpha"', 'name="beta"')))
    assert d.to_text() == "~ cluster: name: alpha -> beta"


def test_heuristics_by_program_and_logging_daemons_by_name():
    extra = ('<quorumd label="qd"><heuristic program="ping -c1 gw" score="1"/></quorumd>\n'
             '<logging><logging_daemon name="corosync" subsys="CMAN" debug="off"/></logging>\n  <clusternodes>')
    old = edited(BASE, ("<clusternodes>", extra))
    new = edited(BASE, ("<clusternodes>", extra.replace('score="1"', 'score="2"').replace("off", "on")))
    assert [c.key for c in diff(old, new).changes] == [
        'quorumd/heuristic[program="ping -c1 gw"]',
        "logging/logging_daemon[name=corosync,subsys=CMAN]",
    ]


def test_unknown_elements_by_tag_and_position():
    old = edited(BASE, ("<clusternodes>", '<mystery a="1"/><mystery a="2"/>\n  <clusternodes>'))
    new = edited(BASE, ("<clusternodes>", '<mystery a="1"/><mystery a="3"/>\n  <clusternodes>'))
    assert diff(old, new).to_text() == "~ mystery[2]: a: 2 -> 3"


def test_text_content_changes():
    events = '<events><event name="e1" class="node">notice("a");</event></events>\n    <resources>'
    old = edited(BASE, ("<resources>", events))
    new = edited(BASE, ("<resources>", events.replace('"a"', '"b"')))
    assert diff(old, new).to_text() == '~ rm/events/event[name=e1]: #text: "notice(\\"a\\");" -> "notice(\\"b\\");"'


def test_values_with_spaces_are_quoted():
    d = diff(load(BASE), edited(BASE, ('file="/etc/init.d/pre"', 'file="/opt/my app/pre"')))
    assert d.to_text() == '~ rm/service[name=db]/script[name=pre]: file: "/etc/init.d/pre" -> "/opt/my app/pre"'


# -- order -------------------------------------------------------------------------------------------------
def swap(text: str, a: str, b: str) -> str:
    marker = "\0"
    return text.replace(a, marker).replace(b, a).replace(marker, b)


def test_fence_method_order_is_significant():
    single = '<method name="single"><device name="apc" port="1"/></method>'
    backup = '<method name="backup"><device name="ipmi-n1"/></method>'
    d = diff(load(BASE), load(swap(BASE, single, backup)))
    change = only(d)
    assert change.key == "clusternode[name=n1]/fence"
    assert change.order is not None and change.order.new == ("method[name=backup]", "method[name=single]")
    assert d.to_text() == ("~ clusternode[name=n1]/fence: order changed: method[name=single], method[name=backup]"
                           " -> method[name=backup], method[name=single]")


def test_device_order_within_a_method_is_significant():
    d = diff(load(BASE), load(swap(BASE, '<device name="apc" port="2"/>', '<device name="apc" port="12"/>')))
    # same-name devices are keyed by position, so a swap reads as two parameter changes
    assert [c.key for c in d.changes] == ["clusternode[name=n2]/fence/method[name=single]/device[name=apc]",
                                          "clusternode[name=n2]/fence/method[name=single]/device[name=apc][2]"]


def test_same_type_resource_order_is_significant():
    pre = '<script name="pre" file="/etc/init.d/pre"/>'
    post = '<script name="post" file="/etc/init.d/post"/>'
    d = diff(load(BASE), load(swap(BASE, pre, post)))
    assert only(d).key == "rm/service[name=db]"
    assert "order changed" in d.to_text()
    assert d.affected_services() == ["service:db"]


def test_order_of_differently_levelled_resources_is_not_significant():
    # ip (level 7) always starts before script (level 9), whatever the file says
    d = diff(load(BASE), load(swap(BASE, '<ip address="10.0.0.6"/>', '<script name="pre" file="/etc/init.d/pre"/>')))
    assert d.is_empty


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('<failoverdomainnode name="n1" priority="1"/>', '<failoverdomainnode name="n2" priority="2"/>'),
        ('<ip address="10.0.0.5" monitor_link="1"/>', '<script name="httpd" file="/etc/init.d/httpd"/>'),
        ('<service name="web"', '<service name="db"'),  # swaps the names, i.e. the services' places
    ],
    ids=["domain-members", "global-resources", "services"],
)
def test_insignificant_orders(a, b):
    old = load(BASE)
    new = load(swap(BASE, a, b))
    d = diff(old, new)
    if "service" in a:  # swapping names swaps whole trees: attribute changes, but no "order changed"
        assert all(c.order is None for c in d.changes)
    else:
        assert d.is_empty


# -- affected services -------------------------------------------------------------------------------------
def test_global_resource_change_affects_referencing_services():
    d = diff(load(BASE), edited(BASE, ('monitor_link="1"', 'monitor_link="0"')))
    assert only(d).key == "rm/resources/ip[address=10.0.0.5]"
    assert d.affected == {"service:web": ("rm/resources/ip[address=10.0.0.5]",)}


def test_domain_change_affects_its_services():
    d = diff(load(BASE), edited(BASE, ('<failoverdomainnode name="n2" priority="2"/>', "")))
    assert d.affected_services() == ["service:web"]


def test_node_change_affects_no_service():
    assert diff(load(BASE), edited(BASE, ('nodeid="2" votes="1"', 'nodeid="2" votes="2"'))).affected_services() == []


def test_vm_change():
    d = diff(load(BASE), edited(BASE, ('path="/etc/libvirt/qemu"', 'path="/srv/qemu"')))
    assert d.affected_services() == ["vm:guest1"]


# -- secrets -----------------------------------------------------------------------------------------------
def test_secret_change_is_masked_everywhere():
    d = diff(load(BASE), edited(BASE, ('passwd="topsecret"', 'passwd="newsecret"')))
    assert d.to_text() == "~ fencedevice[name=apc]: passwd: changed"
    dumped = json.dumps(d.to_dict()) + repr(d) + d.to_text()
    assert "topsecret" not in dumped and "newsecret" not in dumped
    assert d.to_dict()["changes"][0]["changes"] == [{"name": "passwd", "kind": "changed", "secret": True}]


def test_secret_in_added_and_removed_elements_is_masked():
    device = '<fencedevice name="drac" agent="fence_drac5" login="root" passwd="hunter2"/>\n  </fencedevices>'
    d = diff(load(BASE), edited(BASE, ("</fencedevices>", device)))
    assert d.to_text() == "+ fencedevice[name=drac] (agent=fence_drac5 login=root passwd=<hidden>)"
    entry = d.to_dict()["changes"][0]
    assert entry["attributes"] == {"name": "drac", "agent": "fence_drac5", "login": "root"}
    assert entry["secret_attributes"] == ["passwd"]
    back = diff(edited(BASE, ("</fencedevices>", device)), load(BASE))
    assert "hunter2" not in json.dumps(back.to_dict()) + back.to_text() + repr(back)


def test_secret_added_and_removed_attribute():
    d = diff(load(BASE), edited(BASE, (' passwd="ipmipass"', ""), ('login="apc"', 'login="apc" snmp_priv_passwd="x1"')))
    assert sorted(d.to_text().splitlines()) == [
        "~ fencedevice[name=apc]: snmp_priv_passwd: added",
        "~ fencedevice[name=ipmi-n1]: passwd: removed",
    ]


# -- JSON --------------------------------------------------------------------------------------------------
def test_json_shape():
    d = diff(
        load(BASE),
        edited(BASE, ('config_version="5"', 'config_version="6"'), ('recovery="restart"', 'recovery="relocate"')),
    )
    data = json.loads(json.dumps(d.to_dict()))
    assert data == {
        "version": DIFF_FORMAT_VERSION,
        "config_version": {"old": "5", "new": "6"},
        "changes": [
            {
                "kind": "changed",
                "key": "rm/service[name=web]",
                "tag": "service",
                "attributes": {},
                "secret_attributes": [],
                "changes": [
                    {"name": "recovery", "kind": "changed", "secret": False, "old": "restart", "new": "relocate"}
                ],
                "order": None,
            }
        ],
        "affected_services": {"service:web": ["rm/service[name=web]"]},
    }


# -- properties --------------------------------------------------------------------------------------------
NODE_NAMES = ("n1", "n2", "n3", "n4")
DEVICE_NAMES = ("apc", "ipmi", "drac")


@st.composite
def cluster_trees(draw: st.DrawFn) -> etree._Element:
    """Small random cluster.conf trees exercising every keying rule (duplicates included)."""
    root = etree.Element("cluster", name="c", config_version=str(draw(st.integers(1, 3))))
    if draw(st.booleans()):
        etree.SubElement(root, "cman", two_node=draw(st.sampled_from(["0", "1"])))
    nodes = etree.SubElement(root, "clusternodes")
    for i, name in enumerate(draw(st.lists(st.sampled_from(NODE_NAMES), unique=True, max_size=3))):
        node = etree.SubElement(nodes, "clusternode", name=name, nodeid=str(i + 1))
        methods = draw(st.lists(st.sampled_from(["1", "2", "single"]), unique=True, max_size=2))
        if methods:
            fence = etree.SubElement(node, "fence")
            for m in methods:
                method = etree.SubElement(fence, "method", name=m)
                for port, dev in enumerate(draw(st.lists(st.sampled_from(DEVICE_NAMES), max_size=2))):
                    etree.SubElement(method, "device", name=dev, port=str(port + 1))
    devices = etree.SubElement(root, "fencedevices")
    for dev in draw(st.lists(st.sampled_from(DEVICE_NAMES), unique=True, max_size=2)):
        etree.SubElement(devices, "fencedevice", name=dev, agent="fence_" + dev, passwd="pw-" + dev)
    for _ in range(draw(st.integers(0, 2))):
        etree.SubElement(root, "mystery", a=draw(st.sampled_from(["1", "2"])))
    rm = etree.SubElement(root, "rm")
    domains = etree.SubElement(rm, "failoverdomains")
    for name in draw(st.lists(st.sampled_from(["d1", "d2"]), unique=True, max_size=2)):
        domain = etree.SubElement(domains, "failoverdomain", name=name, ordered="1")
        for p, member in enumerate(draw(st.lists(st.sampled_from(NODE_NAMES), unique=True, max_size=2))):
            etree.SubElement(domain, "failoverdomainnode", name=member, priority=str(p + 1))
    resources = etree.SubElement(rm, "resources")
    ips = draw(st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2"]), unique=True, max_size=2))
    for ip in ips:
        etree.SubElement(resources, "ip", address=ip)
    for name in draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), unique=True, max_size=3)):
        svc = etree.SubElement(rm, "service", name=name, domain="d1")
        if ips and draw(st.booleans()):
            etree.SubElement(svc, "ip", ref=draw(st.sampled_from(ips)))
        if draw(st.booleans()):
            fs = etree.SubElement(svc, "fs", name="fs-" + name, device="/dev/" + name, mountpoint="/" + name)
            if draw(st.booleans()):
                etree.SubElement(fs, "nfsexport", name="e-" + name)
        for script in draw(st.lists(st.sampled_from(["a", "b"]), max_size=2)):
            etree.SubElement(svc, "script", name=script, file="/" + script)
    return root


def to_conf(root: etree._Element) -> ClusterConf:
    return ClusterConf.from_bytes(etree.tostring(root))


def reformatted(root: etree._Element, rnd: random.Random) -> etree._Element:
    """The same document with other whitespace, extra comments and shuffled attribute order."""
    out = copy.deepcopy(root)
    for el in out.iter():
        el.tail = None
        if len(el):
            el.text = None
        attrs = list(el.attrib.items())
        rnd.shuffle(attrs)
        el.attrib.clear()
        for k, v in attrs:
            el.set(k, v)
    for el in list(out.iter()):
        if rnd.random() < 0.3:
            el.insert(0, etree.Comment(" note "))
    etree.indent(out, space=rnd.choice(["  ", "\t", " "]))
    return out


def canonical(el: etree._Element) -> tuple:
    """What the diff compares: tag, attributes, stripped text, element children; no comments or whitespace."""
    children = tuple(canonical(c) for c in el if isinstance(c.tag, str))
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip() if not children else "", children)


def elements(root: etree._Element) -> list[etree._Element]:
    return [el for el in root.iter() if isinstance(el.tag, str)]


KEY_ATTRS = {"name", "ref", "address", "program", "subsys", "depth", "ringnumber", "config_version"}
EDITABLE = ("votes", "port", "agent", "recovery", "passwd", "options", "priority", "x_note")


def random_edit(root: etree._Element, data: st.DataObject) -> etree._Element:
    """A copy of `root` with one random element mutated, added or removed (or left alone)."""
    out = copy.deepcopy(root)
    target = data.draw(st.sampled_from(elements(out)))
    op = data.draw(st.sampled_from(["set", "drop", "add", "remove", "noop"]))
    if op == "set":
        target.set(data.draw(st.sampled_from(EDITABLE)), data.draw(st.sampled_from(["0", "1", "x"])))
    elif op == "drop" and target.attrib:
        del target.attrib[data.draw(st.sampled_from(sorted(target.attrib)))]
    elif op == "add":
        etree.SubElement(target, data.draw(st.sampled_from(["script", "mystery", "method"])), name="zz")
    elif op == "remove" and target.getparent() is not None:
        target.getparent().remove(target)
    return out


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(cluster_trees(), st.randoms(use_true_random=False))
def test_property_self_diff_is_empty(root, rnd):
    conf = to_conf(root)
    assert diff(conf, conf).is_empty
    walked = to_conf(root)
    walked.mark_edited()  # no byte-for-byte shortcut: the full comparison must find nothing either
    assert diff(conf, walked).is_empty
    assert diff(conf, to_conf(reformatted(root, rnd))).is_empty


@PROPERTY_SETTINGS
@given(cluster_trees(), st.data())
def test_property_empty_iff_equal_modulo_formatting(root, data):
    other = random_edit(root, data)
    d = diff(to_conf(root), to_conf(other))
    assert d.is_empty == (canonical(root) == canonical(other)), d.to_text()


@PROPERTY_SETTINGS
@given(cluster_trees(), st.data())
def test_property_one_attribute_edit_is_one_change(root, data):
    other = copy.deepcopy(root)
    target = data.draw(st.sampled_from(elements(other)))
    name = data.draw(st.sampled_from([n for n in EDITABLE if n not in KEY_ATTRS]))
    old_value = target.get(name)
    new_value = "S3CRET-value" if name == "passwd" else data.draw(st.sampled_from(["0", "1", "x"]))
    assume(new_value != old_value)
    target.set(name, new_value)
    d = diff(to_conf(root), to_conf(other))
    (change,) = d.changes
    (attr,) = change.changes
    assert change.kind == "changed" and change.tag == target.tag and attr.name == name
    if name == "passwd":
        shown = json.dumps(d.to_dict()) + d.to_text() + repr(d)
        assert "S3CRET" not in shown and (old_value is None or old_value not in shown)
        assert d.to_text() == f"~ {change.key}: passwd: {'added' if old_value is None else 'changed'}"
    else:
        assert (attr.old, attr.new) == (old_value, new_value)


@PROPERTY_SETTINGS
@given(cluster_trees(), cluster_trees())
def test_property_added_removed_symmetry(a, b):
    forward, backward = diff(to_conf(a), to_conf(b)), diff(to_conf(b), to_conf(a))
    assert {c.key for c in forward.added} == {c.key for c in backward.removed}
    assert {c.key for c in forward.removed} == {c.key for c in backward.added}
    assert {c.key for c in forward.changed} == {c.key for c in backward.changed}
    assert forward.affected_services() == backward.affected_services()
