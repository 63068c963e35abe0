"""The cluster.conf vocabulary as data: elements, attributes, value types, and resource types.

One table drives the RelaxNG schema (`cluster_conf.rng`), the semantic checks, the editing API and, later, the
rgmanager engine (resource-type keys, inherit rules, max instances, child start/stop levels). Facts come from
the original schema and agent metadata (rhcs-facts §1); the code is ours.

Resource parameters are listed in their agent-metadata order, because rg_test prints them in that order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# -- value types -------------------------------------------------------------------------------------------
# Each type name maps to a regular expression a value must match in full (used by the RelaxNG schema and by
# the Python checks). "string" accepts anything.
VALUE_TYPES: dict[str, str] = {
    "string": r"[\s\S]*",
    "name": r"\S(.*\S)?",  # non-empty, no leading or trailing blanks
    "int": r"-?[0-9]+",
    "uint": r"[0-9]+",
    "posint": r"0*[1-9][0-9]*",
    "bool": r"[01]",
    "yesno": r"(?i:0|1|yes|no|on|off|true|false)",
    "time": r"[0-9]+[smhdwSMHDW]?",
    "port": r"[0-9]{1,5}",
}

TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str) -> int:
    """Seconds in an rgmanager time value ("30", "10m", "2h", "1d", "1w"); ValueError if malformed."""
    text = value.strip()
    unit = text[-1:].lower() if text[-1:].isalpha() else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit() or unit not in TIME_UNITS:
        raise ValueError(f"not a time value: {value!r}")
    return int(number) * TIME_UNITS[unit]


def is_true(value: str | None) -> bool:
    """rgmanager/cman truth: "1", "yes", "on", "true" (any case)."""
    return (value or "").strip().lower() in ("1", "yes", "on", "true")


@dataclass(frozen=True, slots=True)
class Attr:
    name: str
    type: str = "string"
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default: str | None = None
    secret: bool = False
    doc: str = ""


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """A known element. `open_attrs`: any attribute is legal (agent parameters); `text`: may hold text."""

    name: str
    attrs: tuple[Attr, ...] = ()
    children: tuple[str, ...] = ()
    open_attrs: bool = False
    text: bool = False
    any_children: bool = False  # e.g. <dlm>, passed through unchanged
    doc: str = ""

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None


def _a(name: str, type: str = "string", **kw: object) -> Attr:
    return Attr(name, type, **kw)  # type: ignore[arg-type]


_BOOL = "bool"
_YESNO = "yesno"

# Attribute names that hold secrets anywhere they appear (fence devices, agents). Never printed, logged or
# shown in reports; diffs say "changed" without values.
SECRET_ATTRS = frozenset({"passwd", "password", "snmp_priv_passwd", "community"})


def is_secret(name: str) -> bool:
    """Password-like attribute names: passwd, password, community, anything containing passwd, password or
    secret (secret_key, snmp_priv_passwd) and hexadecimal_kg (the IPMI Kg key). `*_script` names such as
    `passwd_script` (the path of a program that prints the password) are not secrets."""
    low = name.lower()
    if low.endswith("_script"):
        return False
    return low in SECRET_ATTRS or any(part in low for part in ("passwd", "password", "secret", "hexadecimal_kg"))


LOGGING_KEYS = (
    _a("to_syslog", _YESNO),
    _a("to_logfile", _YESNO),
    _a("syslog_facility"),
    _a("syslog_priority", choices=("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")),
    _a("logfile_priority", choices=("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")),
    _a("logfile"),
    _a("debug", choices=("on", "off")),
)

ELEMENTS: dict[str, ElementSpec] = {
    spec.name: spec
    for spec in (
        ElementSpec(
            "cluster",
            (
                _a("name", "name", required=True, doc="cluster name (luci limits it to 15 characters)"),
                _a("config_version", "uint", required=True, doc="must increase with every change"),
                _a("alias"),
            ),
            (
                "cman", "totem", "quorumd", "fence_daemon", "fence_xvmd", "dlm", "gfs_controld", "group",
                "logging", "clusternodes", "fencedevices", "rm", "clvmd",
            ),
        ),
        ElementSpec(
            "cman",
            (
                _a("two_node", _BOOL, default="0"),
                _a("expected_votes", "posint"),
                _a("quorum_dev_poll", "uint"),
                _a("shutdown_timeout", "uint"),
                _a("ccsd_poll", "uint", default="1000"),
                _a("upgrading", _YESNO),
                _a("disallowed", _BOOL),
                _a("port", "port", minimum=1, maximum=65535, default="5405"),
                _a("cluster_id", "uint", maximum=65535),
                _a("hash_cluster_id", _YESNO),
                _a("broadcast", _YESNO, default="no"),
                _a("transport", choices=("udp", "udpb", "udpu", "rdma")),
                _a("keyfile"),
                _a("nodename"),
                _a("debug_mask"),
                _a("disable_openais", _YESNO),
            ),
            ("multicast", "altmulticast"),
        ),
        ElementSpec("multicast", (_a("addr", required=True), _a("ttl", "uint", maximum=255))),
        ElementSpec("altmulticast", (_a("addr", required=True), _a("port", "port"), _a("ttl", "uint", maximum=255))),
        ElementSpec(
            "totem",
            (
                _a("token", "uint", default="10000"),
                _a("consensus", "uint"),
                _a("join", "uint"),
                _a("fail_recv_const", "uint"),
                _a("token_retransmits_before_loss_const", "uint"),
                _a("rrp_mode", choices=("none", "active", "passive")),
                _a("secauth", choices=("on", "off")),
                _a("keyfile"),
                _a("window_size", "uint"),
                _a("max_messages", "uint"),
                _a("miss_count_const", "uint"),
                _a("netmtu", "uint"),
                _a("seqno_unchanged_const", "uint"),
                _a("send_join", "uint"),
            ),
            ("interface",),
        ),
        ElementSpec(
            "interface",
            (
                _a("ringnumber", "uint", maximum=9),
                _a("bindnetaddr"),
                _a("mcastaddr"),
                _a("mcastport", "port"),
                _a("broadcast", _YESNO),
                _a("ttl", "uint", maximum=255),
            ),
        ),
        ElementSpec(
            "quorumd",
            (
                _a("interval", "uint", default="1"),
                _a("tko", "uint", default="10"),
                _a("votes", "uint"),
                _a("min_score", "uint"),
                _a("device"),
                _a("label"),
                _a("cman_label"),
                _a("status_file"),
                _a("scheduler", choices=("rr", "fifo", "other")),
                _a("priority", "int"),
                _a("reboot", _BOOL),
                _a("stop_cman", _BOOL),
                _a("paranoid", _BOOL),
                _a("allow_kill", _BOOL),
                _a("max_error_cycles", "uint"),
                _a("io_timeout", _BOOL),
                _a("master_wins", _BOOL),
                _a("use_uptime", _BOOL),
                _a("tko_up", "uint"),
                _a("upgrade_wait", "uint"),
                _a("votes_on_start", "uint"),
            ),
            ("heuristic",),
        ),
        ElementSpec(
            "heuristic",
            (
                _a("program", required=True),
                _a("score", "uint", default="1"),
                _a("interval", "uint"),
                _a("tko", "uint"),
            ),
        ),
        ElementSpec(
            "fence_daemon",
            (
                _a("post_join_delay", "int", default="6"),
                _a("post_fail_delay", "int", default="0"),
                _a("override_path"),
                _a("override_time", "uint"),
                _a("clean_start", _BOOL, default="0"),
                _a("skip_undefined", _BOOL, default="0"),
            ),
        ),
        ElementSpec("fence_xvmd", open_attrs=True, any_children=True),
        ElementSpec("dlm", open_attrs=True, any_children=True),
        ElementSpec("gfs_controld", open_attrs=True, any_children=True),
        ElementSpec("group", (_a("groupd_compat", "uint"),)),
        ElementSpec("clvmd", (_a("interface"),)),
        ElementSpec("logging", LOGGING_KEYS, ("logging_daemon",)),
        ElementSpec("logging_daemon", (_a("name", required=True), _a("subsys"), *LOGGING_KEYS)),
        ElementSpec("clusternodes", (), ("clusternode",)),
        ElementSpec(
            "clusternode",
            (
                _a("name", "name", required=True),
                _a("nodeid", "posint", doc="unique positive integer"),
                _a("votes", "uint", minimum=0, maximum=255, default="1"),
                _a("weight", "uint"),
                # Our extension (docs/ricci-protocol.md): the node's ricci agent port when it is not 11111.
                _a("ricci_port", "port"),
            ),
            ("altname", "fence", "unfence"),
        ),
        ElementSpec("altname", (_a("name", required=True), _a("port", "port"), _a("mcast"))),
        ElementSpec("fence", (), ("method",)),
        ElementSpec("unfence", (), ("device",)),
        ElementSpec("method", (_a("name", "name", required=True),), ("device",)),
        ElementSpec("device", (_a("name", "name", required=True),), open_attrs=True),
        ElementSpec("fencedevices", (), ("fencedevice",)),
        ElementSpec(
            "fencedevice",
            (_a("name", "name", required=True), _a("agent", "name", required=True)),
            open_attrs=True,
        ),
        ElementSpec(
            "rm",
            (
                _a("log_level", "uint", maximum=7),
                _a("log_facility"),
                _a("status_poll_interval", "posint", default="10"),
                _a("status_child_max", "posint", default="5"),
                _a("transition_throttling", "uint"),
                _a("central_processing", _BOOL, default="0"),
                _a("statusmax", "uint"),
            ),
            ("failoverdomains", "events", "resources", "resource-defaults", "service", "vm"),
        ),
        ElementSpec("failoverdomains", (), ("failoverdomain",)),
        ElementSpec(
            "failoverdomain",
            (
                _a("name", "name", required=True),
                _a("ordered", _YESNO, default="0"),
                _a("restricted", _YESNO, default="0"),
                _a("nofailback", _YESNO, default="0"),
            ),
            ("failoverdomainnode",),
        ),
        ElementSpec(
            "failoverdomainnode",
            (
                _a("name", "name", required=True),
                _a("priority", "int", minimum=1, maximum=100, doc="1..100, lower is preferred"),
            ),
        ),
        ElementSpec("events", (), ("event",)),
        ElementSpec(
            "event",
            (
                _a("name", "name", required=True),
                _a("file"),
                _a("priority", "uint", minimum=1, maximum=99),
                _a("class", choices=("service", "node")),
                _a("service"),
                _a("service_state"),
                _a("service_owner"),
                _a("node"),
                _a("node_id", "uint"),
                _a("node_state", _BOOL),
                _a("node_clean", _BOOL),
                _a("node_local", _BOOL),
            ),
            text=True,
        ),
        ElementSpec("resources", doc="global resources, referenced with ref="),
        ElementSpec("resource-defaults", open_attrs=True, any_children=True),
        ElementSpec(
            "action",
            (
                _a("name", required=True),
                _a("depth", doc='an integer or "*"'),
                _a("interval", "time"),
                _a("timeout", "time"),
            ),
        ),
    )
}

# Special attributes legal on every resource node (rhcs-facts §1.4).
SPECIAL_RESOURCE_ATTRS: tuple[Attr, ...] = (
    _a("__independent_subtree", choices=("0", "1", "2", "yes", "no", "non-critical")),
    _a("__enforce_timeouts", _YESNO),
    _a("__max_failures", "uint"),
    _a("__failure_expire_time", "time"),
    _a("__max_restarts", "uint"),
    _a("__restart_expire_time", "time"),
)


# -- resource types ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """A resource-agent parameter. `inherit` names an ancestor attribute (`service%name` = the service's)."""

    name: str
    primary: bool = False
    unique: bool = False
    required: bool = False
    inherit: str | None = None
    reconfig: bool = False
    type: str = "string"
    choices: tuple[str, ...] = ()
    default: str | None = None


@dataclass(frozen=True, slots=True)
class ChildRule:
    """How children of `type` start and stop under a parent: levels 1..100, or forbidden."""

    type: str
    start: int | None = None
    stop: int | None = None
    forbid: bool = False


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    agent: str
    params: tuple[Param, ...]
    max_instances: int | None = None
    children: tuple[ChildRule, ...] = ()
    top_level: bool = False  # service and vm: only directly under <rm>
    migratory: bool = False
    actions: tuple[tuple[str, int | None, int | None, int | None], ...] = field(default=())
    # (action name, timeout s, interval s, depth)

    @property
    def primary(self) -> str:
        for p in self.params:
            if p.primary:
                return p.name
        return "name"

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def child_rule(self, child_type: str) -> ChildRule | None:
        for rule in self.children:
            if rule.type == child_type:
                return rule
        return None


def _p(name: str, flags: str = "", inherit: str | None = None, **kw: object) -> Param:
    """Shorthand: flags is a string of P (primary), U (unique), R (required), C (reconfig)."""
    return Param(
        name,
        primary="P" in flags,
        unique="U" in flags,
        required="R" in flags,
        reconfig="C" in flags,
        inherit=inherit,
        **kw,  # type: ignore[arg-type]
    )


_SERVICE_COMMON = (
    _p("name", "PUR"),
    _p("domain", "C"),
    _p("autostart", "C", type="yesno", default="1"),
    _p("hardrecovery", type="yesno"),
    _p("exclusive", "C", type="yesno", default="0"),
    _p("nfslock", type="yesno", default="0"),
    _p("nfs_client_cache", type="yesno", default="0"),
    _p("recovery", "C", choices=("restart", "relocate", "disable", "restart-disable"), default="restart"),
    _p("depend", "C"),
    _p("depend_mode", "C", choices=("hard", "soft"), default="hard"),
    _p("max_restarts", "C", type="uint", default="0"),
    _p("restart_expire_time", "C", type="time", default="0"),
    _p("priority", "C", type="uint", default="0"),
)

# Default child order under a service (start level / stop level), rhcs-facts §2.8.
_SERVICE_CHILDREN = (
    ChildRule("lvm", 1, 9),
    ChildRule("fs", 2, 8),
    ChildRule("clusterfs", 3, 7),
    ChildRule("netfs", 4, 6),
    ChildRule("nfsexport", 5, 5),
    ChildRule("nfsclient", 6, 4),
    ChildRule("ip", 7, 2),
    ChildRule("smb", 8, 3),
    ChildRule("script", 9, 1),
)
_FS_CHILDREN = (
    ChildRule("fs", 1, 3),
    ChildRule("clusterfs", 1, 3),
    ChildRule("nfsexport", 3, 1),
)

RESOURCE_TYPES: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType(
            "service", "service.sh", _SERVICE_COMMON, max_instances=1, children=_SERVICE_CHILDREN, top_level=True,
            actions=(("status", None, 3600, None),),
        ),
        ResourceType(
            "vm",
            "vm.sh",
            (
                *_SERVICE_COMMON,
                _p("migration_mapping"),
                _p("use_virsh", type="yesno"),
                _p("xmlfile"),
                _p("migrate", choices=("live", "pause"), default="live"),
                _p("path"),
                _p("snapshot"),
                _p("status_program"),
                _p("hypervisor", default="auto"),
                _p("hypervisor_uri"),
                _p("migration_uri"),
            ),
            max_instances=1,
            top_level=True,
            migratory=True,
            actions=(("status", 30, 30, None), ("migrate", 600, None, None)),
        ),
        ResourceType(
            "ip",
            "ip.sh",
            (
                _p("address", "PU"),
                _p("family", choices=("auto", "inet", "inet6")),
                _p("monitor_link", type="yesno", default="1"),
                _p("nfslock", inherit="service%nfslock"),
                _p("sleeptime", type="uint"),
                _p("prefer_interface"),
                _p("disable_rdisc", type="yesno"),
            ),
            max_instances=1,
            children=(ChildRule("nfsclient", forbid=True), ChildRule("nfsexport", forbid=True)),
            actions=(("status", 10, 20, None),),
        ),
        ResourceType(
            "fs",
            "fs.sh",
            (
                _p("name", "P"),
                _p("mountpoint", "UR"),
                _p("device", "UR"),
                _p("fstype"),
                _p("force_unmount", type="yesno"),
                _p("quick_status", type="yesno"),
                _p("self_fence", type="yesno"),
                _p("nfslock", inherit="nfslock"),
                _p("nfsrestart", type="yesno"),
                _p("fsid"),
                _p("force_fsck", type="yesno"),
                _p("options"),
            ),
            max_instances=1,
            children=_FS_CHILDREN,
            actions=(("status", None, 60, None),),
        ),
        ResourceType(
            "clusterfs",
            "clusterfs.sh",
            (
                _p("name", "P"),
                _p("mountpoint", "UR"),
                _p("device", "UR"),
                _p("fstype", choices=("gfs", "gfs2")),
                _p("force_unmount", type="yesno"),
                _p("self_fence", type="yesno"),
                _p("nfslock", inherit="nfslock"),
                _p("nfsrestart", type="yesno"),
                _p("fsid"),
                _p("options"),
            ),
            children=_FS_CHILDREN,
            actions=(("status", None, 60, None),),
        ),
        ResourceType(
            "netfs",
            "netfs.sh",
            (
                _p("name", "P"),
                _p("mountpoint", "UR"),
                _p("host", "R"),
                _p("export", "R"),
                _p("fstype", choices=("nfs", "nfs4", "cifs")),
                _p("no_unmount", type="yesno"),
                _p("force_unmount", type="yesno"),
                _p("options"),
            ),
            children=(ChildRule("nfsexport", forbid=True), ChildRule("nfsclient", forbid=True)),
            actions=(("status", None, 60, None),),
        ),
        ResourceType(
            "nfsexport",
            "nfsexport.sh",
            (
                _p("name", "P"),
                _p("device", inherit="device"),
                _p("path", inherit="mountpoint"),
                _p("fsid", inherit="fsid"),
            ),
            children=(ChildRule("nfsclient"), ChildRule("nfsexport", forbid=True)),
            actions=(("status", None, 3600, None),),
        ),
        ResourceType(
            "nfsclient",
            "nfsclient.sh",
            (
                _p("name", "PU"),
                _p("target", "R"),
                _p("path", inherit="path"),
                _p("fsid", inherit="fsid"),
                _p("options"),
                _p("allow_recover", type="yesno"),
                _p("service_name"),
                _p("use_cache", type="yesno"),
            ),
            actions=(("status", None, 60, None), ("recover", None, None, None)),
        ),
        ResourceType(
            "nfsserver",
            "nfsserver.sh",
            (_p("name", "P"), _p("path"), _p("nfspath")),
            max_instances=1,
            children=(ChildRule("nfsclient", 1, 2), ChildRule("ip", 2, 1)),
        ),
        ResourceType(
            "script",
            "script.sh",
            (_p("name", "PU"), _p("file", "UR"), _p("service_name", inherit="service%name")),
            actions=(("status", None, 30, None),),
        ),
        ResourceType(
            "lvm",
            "lvm.sh",
            (_p("name", "P"), _p("vg_name", "R"), _p("lv_name"), _p("self_fence", type="yesno"), _p("nfslock")),
            max_instances=1,
        ),
        ResourceType(
            "mysql",
            "mysql.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/my.cnf"),
                _p("listen_address"),
                _p("mysqld_options"),
                _p("startup_wait", type="uint", default="30"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "postgres-8",
            "postgres-8.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/var/lib/pgsql/data/postgresql.conf"),
                _p("postmaster_user", default="postgres"),
                _p("postmaster_options", default="-D /var/lib/pgsql/data"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "apache",
            "apache.sh",
            (
                _p("name", "PU"),
                _p("server_root", default="/etc/httpd"),
                _p("config_file", default="conf/httpd.conf"),
                _p("httpd_options"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "tomcat-5",
            "tomcat-5.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/tomcat5/tomcat5.conf"),
                _p("tomcat_user"),
                _p("catalina_options"),
                _p("catalina_base"),
                _p("shutdown_wait", type="uint", default="30"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "tomcat-6",
            "tomcat-6.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/tomcat6/tomcat6.conf"),
                _p("shutdown_wait", type="uint", default="30"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "samba",
            "samba.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/samba/smb.conf"),
                _p("smbd_options"),
                _p("nmbd_options"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType("smb", "smb.sh", (_p("name", "P"), _p("workgroup"), _p("service_name"))),
        ResourceType(
            "named",
            "named.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/named.conf"),
                _p("named_sdb", type="yesno"),
                _p("named_working_dir"),
                _p("named_options"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "openldap",
            "openldap.sh",
            (
                _p("name", "PU"),
                _p("config_file", default="/etc/openldap/slapd.conf"),
                _p("url_list"),
                _p("slapd_options"),
                _p("shutdown_wait", type="uint"),
                _p("service_name", inherit="service%name"),
            ),
        ),
        ResourceType(
            "oracledb",
            "oracledb.sh",
            (_p("name", "PU"), _p("user", "R"), _p("home", "R"), _p("type"), _p("vhost")),
            max_instances=1,
        ),
        ResourceType(
            "drbd",
            "drbd.sh",
            (_p("name", "PU"), _p("resource", "RU")),
            max_instances=1,
        ),
        # Generic OCF agent: <ocf name="x" provider="heartbeat" type="Dummy" param="value" .../>; every other
        # attribute is passed to the agent as OCF_RESKEY_<attribute>. See docs/cluster-conf.md.
        ResourceType(
            "ocf",
            "ocf",
            (_p("name", "PU"), _p("provider", "R", default="heartbeat"), _p("type", "R")),
        ),
    )
}

# Resource types whose elements accept any extra attribute (agent parameters passed through).
OPEN_PARAM_TYPES = frozenset({"ocf"})

# Element names that are part of the format but are not resources; a child element of a service, vm or
# resource with one of these names is a structural error, not an unknown resource type.
NON_RESOURCE_ELEMENTS = frozenset(ELEMENTS) - {"action"}

# Pre-2005 element names found in old example files; they were renamed before any release that shipped.
LEGACY_ELEMENTS: dict[str, str] = {
    "nodes": "clusternodes",
    "node": "clusternode",
    "fence_devices": "fencedevices",
    "resourcegroup": "service",
}


def resource_type(name: str) -> ResourceType | None:
    return RESOURCE_TYPES.get(name)
