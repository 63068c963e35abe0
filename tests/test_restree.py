"""Resource trees (rgmanager.restree) and the reconfiguration delta (rgmanager.reconfig)."""
from __future__ import annotations

import pytest

from cluster_conf.document import ClusterConf
from rgmanager.reconfig import Change, compare_resources, delta
from rgmanager.restree import (
    ResourceTrees,
    Threshold,
    build_trees,
    independent_subtrees,
    non_critical_subtrees,
    start_sequence,
    stop_sequence,
)


def trees_of(rm_body: str) -> ResourceTrees:
    return build_trees(ClusterConf.from_string(f"<cluster name='c' config_version='1'><rm>{rm_body}</rm></cluster>"))


def ids(nodes) -> list[str]:
    return [n.id for n in nodes]


# -- ordering ------------------------------------------------------------------------------------------------
TYPED = """
<service name="s">
  <script name="app" file="/etc/init.d/app"/>
  <ip address="10.0.0.1"/>
  <fs name="data" mountpoint="/data" device="/dev/sdb1"/>
  <lvm name="vg" vg_name="vg0"/>
  <script name="app2" file="/etc/init.d/app2"/>
  <smb name="share"/>
  <nfsexport name="exp"/>
</service>
"""


def test_typed_children_start_by_level_and_config_order_within_a_type() -> None:
    tree = trees_of(TYPED).tree("s")
    assert ids(start_sequence(tree)) == [
        "service:s", "lvm:vg", "fs:data", "nfsexport:exp", "ip:10.0.0.1", "smb:share", "script:app", "script:app2",
    ]


def test_typed_children_stop_by_stop_level_and_reverse_config_order_within_a_type() -> None:
    tree = trees_of(TYPED).tree("s")
    # stop levels under service: script 1, ip 2, smb 3, nfsclient 4, nfsexport 5, ..., fs 8, lvm 9
    assert ids(stop_sequence(tree)) == [
        "script:app2", "script:app", "ip:10.0.0.1", "smb:share", "nfsexport:exp", "fs:data", "lvm:vg", "service:s",
    ]


def test_untyped_children_after_typed_on_start_and_first_reversed_on_stop() -> None:
    tree = trees_of("""
      <service name="s">
        <mysql name="db1"/>
        <ip address="10.0.0.1"/>
        <apache name="web"/>
        <mysql name="db2"/>
      </service>""").tree("s")
    assert ids(start_sequence(tree)) == ["service:s", "ip:10.0.0.1", "mysql:db1", "apache:web", "mysql:db2"]
    assert ids(stop_sequence(tree)) == ["mysql:db2", "apache:web", "mysql:db1", "ip:10.0.0.1", "service:s"]


def test_nested_subtrees_parent_first_on_start_children_first_on_stop() -> None:
    tree = trees_of("""
      <service name="s">
        <fs name="outer" mountpoint="/o" device="/dev/o">
          <nfsexport name="e">
            <nfsclient name="c1" target="a"/>
            <nfsclient name="c2" target="b"/>
          </nfsexport>
          <fs name="inner" mountpoint="/o/i" device="/dev/i"/>
        </fs>
        <script name="app" file="/x">
          <ip address="10.0.0.2"/>
          <apache name="web"/>
        </script>
      </service>""").tree("s")
    # under fs: fs/clusterfs start 1, nfsexport start 3; under nfsexport: nfsclient has no level (config order)
    assert ids(start_sequence(tree)) == [
        "service:s", "fs:outer", "fs:inner", "nfsexport:e", "nfsclient:c1", "nfsclient:c2",
        "script:app", "ip:10.0.0.2", "apache:web",
    ]
    # under fs: nfsexport stop 1, fs stop 3; under script everything is untyped (reverse config order)
    assert ids(stop_sequence(tree)) == [
        "apache:web", "ip:10.0.0.2", "script:app",
        "nfsclient:c2", "nfsclient:c1", "nfsexport:e", "fs:inner", "fs:outer", "service:s",
    ]


def test_tree_children_are_typed_first_then_untyped_in_config_order() -> None:
    tree = trees_of("""
      <service name="s"><apache name="w"/><script name="a" file="/a"/><ip address="10.0.0.1"/></service>""").tree("s")
    assert ids(tree.children) == ["ip:10.0.0.1", "script:a", "apache:w"]  # service's child-rule order, then untyped


def test_sequences_of_a_subtree_start_at_that_node() -> None:
    tree = trees_of("<service name='s'><fs name='f' mountpoint='/m' device='/d'><nfsexport name='e'/></fs></service>")
    fs = tree.tree("s").children[0]
    assert ids(start_sequence(fs)) == ["fs:f", "nfsexport:e"]
    assert ids(stop_sequence(fs)) == ["nfsexport:e", "fs:f"]


# -- resources, references, inheritance ----------------------------------------------------------------------
def test_global_reference_and_inline_definition() -> None:
    trees = trees_of("""
      <resources><ip address="10.0.0.1" monitor_link="0"/></resources>
      <service name="s"><ip ref="10.0.0.1"/><script name="inl" file="/i"/></service>""")
    ip, script = trees.tree("s").children
    assert ip.resource.inline is False and ip.attrs["monitor_link"] == "0"
    assert script.resource.inline is True and script.primary == "inl" and script.id == "script:inl"
    assert [r.id for r in trees.resources] == ["ip:10.0.0.1", "script:inl", "service:s"]  # by type, alphabetical
    assert trees.tree("s").resource.inline is True


def test_metadata_defaults_fill_resource_attributes_but_not_service_ones() -> None:
    trees = trees_of("<service name='s'><ip address='10.0.0.1'/></service>")
    service = trees.tree("s")
    assert dict(service.children[0].attrs) == {"address": "10.0.0.1", "monitor_link": "1"}
    assert dict(service.attrs) == {"name": "s"}
    assert service.value("autostart") == "1" and service.value("recovery") == "restart"


def test_inherit_from_nearest_ancestor_and_chained() -> None:
    tree = trees_of("""
      <service name="s">
        <fs name="f" mountpoint="/export" device="/dev/sdb1" fsid="77">
          <nfsexport name="e"><nfsclient name="c" target="*"/></nfsexport>
        </fs>
      </service>""").tree("s")
    export = tree.children[0].children[0]
    client = export.children[0]
    assert export.attrs["device"] == "/dev/sdb1" and export.attrs["path"] == "/export" and export.attrs["fsid"] == "77"
    assert client.attrs["path"] == "/export"  # nfsclient path <- nfsexport path <- fs mountpoint
    assert client.attrs["fsid"] == "77"


def test_inherit_unresolved_is_absent() -> None:
    tree = trees_of("<service name='s'><nfsexport name='e'/></service>").tree("s")
    assert "device" not in tree.children[0].attrs and "path" not in tree.children[0].attrs


def test_service_percent_inherit_reads_the_direct_service_parent_only() -> None:
    tree = trees_of("""
      <service name="s" nfslock="1">
        <script name="outer" file="/o"><script name="inner" file="/i"/></script>
        <ip address="10.0.0.1"/>
      </service>""").tree("s")
    ip, outer = tree.children
    assert outer.attrs["service_name"] == "s"
    assert ip.attrs["nfslock"] == "1"
    assert "service_name" not in outer.children[0].attrs  # the 2007 quirk kept for conformance (test017)


def test_explicit_value_of_an_inherited_parameter_wins() -> None:
    tree = trees_of("<service name='s'><script name='a' file='/a' service_name='other'/></service>").tree("s")
    assert tree.children[0].attrs["service_name"] == "other"


def test_max_instances_second_reference_dropped_with_warning() -> None:
    trees = trees_of("""
      <resources><ip address="10.0.0.9"/><script name="shared" file="/s"/></resources>
      <service name="a"><ip ref="10.0.0.9"/><script ref="shared"/></service>
      <service name="b"><ip ref="10.0.0.9"/><script ref="shared"/></service>""")
    assert trees.warnings == ("Warning: Max references exceeded for resource address (type ip)",)
    assert ids(trees.tree("a").children) == ["ip:10.0.0.9", "script:shared"]
    assert ids(trees.tree("b").children) == ["script:shared"]  # script is not max-instance
    assert trees.instance_count(trees.resource("ip:10.0.0.9")) == 1
    assert trees.instance_count(trees.resource("script:shared")) == 2


def test_bad_references_and_forbidden_children_are_dropped_with_warnings() -> None:
    trees = trees_of("""
      <service name="s">
        <ip ref="10.9.9.9"/>
        <ip address="10.0.0.1"><nfsexport name="e"/></ip>
      </service>""")
    assert ids(trees.tree("s").children) == ["ip:10.0.0.1"]
    assert trees.tree("s").children[0].children == ()
    assert any("nonexistent resource 10.9.9.9" in w for w in trees.warnings)
    assert any("nfsexport is not allowed as a child of ip:10.0.0.1" in w for w in trees.warnings)


def test_services_then_vms_and_lookup() -> None:
    trees = trees_of("<vm name='v1'/><service name='b'/><service name='a'/>")
    assert ids(trees.trees) == ["service:b", "service:a", "vm:v1"]
    assert trees.tree("v1").type == "vm" and trees.tree("service:a").primary == "a" and trees.tree("zz") is None


def test_parent_links_and_walk() -> None:
    tree = trees_of("<service name='s'><fs name='f' mountpoint='/m' device='/d'><nfsexport name='e'/></fs></service>")
    root = tree.tree("s")
    export = root.children[0].children[0]
    assert export.parent is root.children[0] and export.root is root and root.parent is None
    assert ids(root.walk()) == ["service:s", "fs:f", "nfsexport:e"]


def test_nodes_are_immutable() -> None:
    root = trees_of("<service name='s'/>").tree("s")
    with pytest.raises(AttributeError):
        root.type = "vm"  # type: ignore[misc]
    with pytest.raises(TypeError):
        root.attrs["name"] = "x"  # type: ignore[index]


def test_action_children_are_kept() -> None:
    root = trees_of("""<service name='s'><script name='a' file='/a'>
        <action name='status' interval='10s' timeout='5'/></script></service>""").tree("s")
    assert [dict(a) for a in root.children[0].actions] == [{"name": "status", "interval": "10s", "timeout": "5"}]
    assert root.children[0].children == ()


# -- special attributes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "independent", "non_critical"),
    [("1", True, False), ("yes", True, False), ("2", True, True), ("non-critical", True, True), ("0", False, False)],
)
def test_independent_subtree_values(value: str, independent: bool, non_critical: bool) -> None:
    root = trees_of(f"<service name='s'><script name='a' file='/a' __independent_subtree='{value}'/></service>")
    node = root.tree("s").children[0]
    assert (node.independent, node.non_critical) == (independent, non_critical)


def test_independent_subtree_ignored_on_services_and_listed_by_helpers() -> None:
    root = trees_of("""
      <service name="s" __independent_subtree="1">
        <script name="a" file="/a" __independent_subtree="1"><apache name="w" __independent_subtree="2"/></script>
        <script name="b" file="/b"/>
      </service>""").tree("s")
    assert root.independent is False
    assert ids(independent_subtrees(root)) == ["script:a", "apache:w"]
    assert ids(non_critical_subtrees(root)) == ["apache:w"]


def test_special_attributes_on_the_reference_override_the_definition() -> None:
    trees = trees_of("""
      <resources><script name="a" file="/a" __enforce_timeouts="1" __independent_subtree="1"/></resources>
      <service name="s"><script ref="a" __independent_subtree="2"/></service>""")
    node = trees.tree("s").children[0]
    assert node.enforce_timeouts is True and node.non_critical is True
    assert "__enforce_timeouts" not in node.attrs and "__enforce_timeouts" not in node.resource.attrs


def test_thresholds_need_both_attributes_and_parse_times() -> None:
    trees = trees_of("""
      <service name="s">
        <script name="a" file="/a" __independent_subtree="1" __max_restarts="3" __restart_expire_time="10m"
                __max_failures="2" __failure_expire_time="30"/>
        <script name="b" file="/b" __max_failures="2"/>
        <script name="c" file="/c" __max_restarts="3" __restart_expire_time="1h"/>
      </service>""")
    a, b, c = trees.tree("s").children
    assert a.restart_threshold == Threshold(3, 600) and a.failure_threshold == Threshold(2, 30)
    assert b.failure_threshold is None
    assert c.restart_threshold is None  # only independent subtrees
    assert any("__max_failures and __failure_expire_time work only together" in w for w in trees.warnings)
    assert any("applies only to independent subtrees" in w for w in trees.warnings)


# -- reconfiguration delta -------------------------------------------------------------------------------------
BASE = """
  <resources><ip address="10.0.0.1"/><nfsclient name="c" target="*" options="ro"/></resources>
  <service name="a">
    <ip ref="10.0.0.1"/>
    <fs name="f" mountpoint="/m" device="/d"><nfsexport name="e"><nfsclient ref="c"/></nfsexport></fs>
    <script name="app" file="/app"/>
  </service>
  <service name="b"><script name="b1" file="/b1"/></service>
"""


def test_no_change_no_flags() -> None:
    result = delta(trees_of(BASE), trees_of(BASE))
    assert not result.old_node_flags and not result.new_node_flags
    assert not result.old_resource_flags and not result.new_resource_flags
    assert result.changed == () and result.added == () and result.removed == ()


def test_changed_leaf_restarts_only_that_subtree() -> None:
    result = delta(trees_of(BASE), trees_of(BASE.replace('options="ro"', 'options="rw"')))
    a = result.service("service:a")
    assert ids(a.stop_roots) == ["nfsclient:c"] and ids(a.start_roots) == ["nfsclient:c"]
    assert not a.whole_service and result.changed == ("service:a",)
    assert result.service("service:b").unchanged


def test_changed_parent_restarts_its_subtree_in_order() -> None:
    result = delta(trees_of(BASE), trees_of(BASE.replace('device="/d"', 'device="/d2"')))
    a = result.service("service:a")
    assert ids(a.stop_roots) == ["fs:f"]
    assert ids(a.stop_order) == ["nfsclient:c", "nfsexport:e", "fs:f"]
    assert ids(a.start_order) == ["fs:f", "nfsexport:e", "nfsclient:c"]
    assert result.node_flags(a.new.children[0]) == Change.NEEDSTART  # fs is first under the service
    assert result.node_flags(a.new.children[0].children[0]) == Change.NONE  # implied by its parent


def test_added_removed_and_changed_services() -> None:
    new = BASE.replace('<service name="b"><script name="b1" file="/b1"/></service>',
                       '<service name="c"/>').replace('<service name="a">', '<service name="a" nfslock="1">')
    result = delta(trees_of(BASE), trees_of(new))
    assert result.removed == ("service:b",) and result.added == ("service:c",)
    a = result.service("service:a")
    assert a.whole_service and ids(a.stop_order)[-1] == "service:a" and ids(a.start_order)[0] == "service:a"
    assert len(a.stop_order) == 6 and len(a.start_order) == 6
    b = result.service("service:b")
    assert b.removed and ids(b.stop_order) == ["script:b1", "service:b"] and b.start_order == ()


def test_moved_resource_stops_in_old_place_starts_in_new() -> None:
    new = BASE.replace('<script name="app" file="/app"/>', "").replace(
        '<ip ref="10.0.0.1"/>', '<ip ref="10.0.0.1"><script name="app" file="/app"/></ip>')
    a = delta(trees_of(BASE), trees_of(new)).service("service:a")
    assert ids(a.stop_roots) == ["script:app"] and ids(a.start_roots) == ["script:app"]
    assert a.start_roots[0].parent.id == "ip:10.0.0.1"


def test_inline_versus_global_definition_is_not_a_change() -> None:
    old = "<service name='s'><script name='x' file='/x'/></service>"
    new = "<resources><script name='x' file='/x'/></resources><service name='s'><script ref='x'/></service>"
    result = delta(trees_of(old), trees_of(new))
    assert result.service("service:s").unchanged and not result.new_resource_flags


def test_special_attribute_change_restarts_nothing() -> None:
    new = BASE.replace('<script name="app" file="/app"/>', '<script name="app" file="/app" __enforce_timeouts="1"/>')
    assert delta(trees_of(BASE), trees_of(new)).changed == ()


def test_reconfigurable_only_change_is_a_reconfig_not_a_restart() -> None:
    old, new = trees_of("<service name='s' recovery='restart'/>"), trees_of("<service name='s' recovery='relocate'/>")
    assert compare_resources(old.trees[0].resource, new.trees[0].resource) == 2
    result = delta(old, new)
    s = result.service("service:s")
    assert s.stop_roots == () and s.start_roots == () and ids(s.reconfig) == ["service:s"]
    assert result.new_resource_flags[new.trees[0].resource] == Change.NEEDSTART | Change.RECONFIG


def test_unreferenced_new_resource_flagged_in_list_only() -> None:
    new = BASE.replace("<resources>", '<resources><fs name="spare" mountpoint="/s" device="/ds"/>')
    result = delta(trees_of(BASE), trees_of(new))
    assert [r.id for r, f in result.new_resource_flags.items() if f == Change.NEEDSTART] == ["fs:spare"]
    assert not result.new_node_flags and result.changed == ()


def test_inputs_without_rm_and_plain_lxml_trees() -> None:
    empty = build_trees(ClusterConf.from_string("<cluster name='c' config_version='1'/>"))
    assert empty.trees == () and empty.resources == () and empty.warnings == ()
    conf = ClusterConf.from_string("<cluster name='c' config_version='1'><rm><service name='s'/></rm></cluster>")
    assert [t.id for t in build_trees(conf.tree).trees] == ["service:s"]
    assert [t.id for t in build_trees(conf.root).trees] == ["service:s"]


def test_resource_defaults_replace_the_metadata_defaults_but_not_set_values():
    from cluster_conf import ClusterConf
    from rgmanager.restree import build_trees

    conf = ClusterConf.from_string(
        '<cluster name="c" config_version="1"><rm>'
        '<resource-defaults><ip monitor_link="0" sleeptime="5"/><script bogus="x"/></resource-defaults>'
        '<service name="s"><ip address="10.0.0.1"/><ip address="10.0.0.2" monitor_link="1"/>'
        '<script name="a" file="/etc/init.d/a"/></service></rm></cluster>'
    )
    tree = build_trees(conf).tree("s")
    first, second, script = tree.children
    assert (first.attrs["monitor_link"], first.attrs["sleeptime"]) == ("0", "5")  # the site's defaults
    assert second.attrs["monitor_link"] == "1"  # a value set on the resource wins
    assert "bogus" not in script.attrs  # only parameters the type knows


def test_without_resource_defaults_the_metadata_default_applies():
    from cluster_conf import ClusterConf
    from rgmanager.restree import build_trees

    conf = ClusterConf.from_string(
        '<cluster name="c" config_version="1"><rm><service name="s"><ip address="10.0.0.1"/></service></rm></cluster>'
    )
    assert build_trees(conf).tree("s").children[0].attrs["monitor_link"] == "1"
