"""The registry of report codes: every code any part of cluster_conf emits, with its severity and a summary.

docs/config-reports.md explains each code with an example and a fix; tests/test_codes.py keeps this table, the
docs and the sources in step (a code emitted anywhere must be listed here and documented there, and every code
listed here must be emitted somewhere).

To add a code: add one `Code` line below (in its group), emit it with `error("CODE", ...)`/`warning("CODE", ...)`
(or `report("CODE", ...)`, which takes the severity from this table), and add a `### CODE` section to
docs/config-reports.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from cluster_conf.reports import Report, Severity


@dataclass(frozen=True, slots=True)
class Code:
    severity: Severity
    summary: str


_E = Severity.ERROR
_W = Severity.WARNING

CODES: dict[str, Code] = {
    # -- reading the file (cluster_conf.xmlsafe, cluster_conf.document) ------------------------------------
    "FILE_NOT_FOUND": Code(_E, "the file does not exist"),
    "FILE_UNREADABLE": Code(_E, "the file cannot be read (permissions, a directory, an I/O error)"),
    "XML_MALFORMED": Code(_E, "the file is not well-formed XML"),
    "XML_TOO_LARGE": Code(_E, "the file, or a text node in it, exceeds the size limit"),
    "XML_TOO_DEEP": Code(_E, "elements are nested deeper than the parser allows"),
    "XML_ENTITY_FORBIDDEN": Code(_E, "the document uses entity references or entity expansion"),
    "XML_DOCTYPE_FORBIDDEN": Code(_E, "the DOCTYPE has an internal subset (entity or element declarations)"),
    "ROOT_NOT_CLUSTER": Code(_E, "the root element is not <cluster>"),
    # -- the RelaxNG schema (cluster_conf.rng, cluster_conf.structure) ---------------------------------------
    "SCHEMA_INVALID": Code(_E, "the RelaxNG schema rejects the document (libxml2's own words)"),
    "SCHEMA_ATTRIBUTE_MISSING": Code(_E, "a required attribute is missing"),
    "SCHEMA_VALUE_INVALID": Code(_E, "an attribute value has the wrong type or is out of range"),
    "SCHEMA_ELEMENT_MISPLACED": Code(_E, "a known element appears where the format does not allow it"),
    "SCHEMA_TEXT_NOT_ALLOWED": Code(_E, "text inside an element that takes no text"),
    "VERSION_MISSING": Code(_E, "<cluster> has no config_version"),
    "VERSION_NOT_INTEGER": Code(_E, "config_version is not a non-negative integer"),
    "CLUSTER_NAME_MISSING": Code(_E, "<cluster> has no name, or an empty one"),
    "NODE_VOTES_INVALID": Code(_E, "clusternode votes is not an integer from 0 to 255"),
    "FENCEDEVICE_NO_AGENT": Code(_E, "a fencedevice has no agent"),
    "DOMAIN_PRIORITY_INVALID": Code(_E, "a failoverdomainnode priority is not an integer from 1 to 100"),
    "HEURISTIC_NO_PROGRAM": Code(_E, "a quorum-disk heuristic has no program"),
    "RM_POLL_INTERVAL_INVALID": Code(_E, "rm status_poll_interval is not an integer of at least 1"),
    "TIME_VALUE_INVALID": Code(_E, "a time value is not a number with an optional s/m/h/d/w suffix"),
    "RESOURCE_PARAM_MISSING": Code(_E, "a resource definition lacks its primary key or a required parameter"),
    "SERVICE_NOT_TOP_LEVEL": Code(_E, "a service or vm is nested instead of being directly under <rm>"),
    "LEGACY_ELEMENT": Code(_E, "a pre-release element name that no released version reads"),
    # -- semantic checks (cluster_conf.validation) -----------------------------------------------------------
    "SECTION_DUPLICATE": Code(_E, "a section that may appear once appears twice"),
    "NODE_NAME_DUPLICATE": Code(_E, "two clusternodes have the same name"),
    "NODEID_DUPLICATE": Code(_E, "two clusternodes have the same nodeid"),
    "NODEID_MISSING": Code(_E, "a clusternode has no nodeid (required since cluster 3)"),
    "FENCE_DEVICE_UNDEFINED": Code(_E, "a fence or unfence device names no defined fencedevice"),
    "FENCEDEVICE_NAME_DUPLICATE": Code(_E, "two fencedevices have the same name"),
    "METHOD_NAME_DUPLICATE": Code(_E, "two fence methods of one node have the same name"),
    "DOMAIN_NAME_DUPLICATE": Code(_E, "two failover domains have the same name"),
    "DOMAIN_NODE_DUPLICATE": Code(_E, "a node is listed twice in one failover domain"),
    "DOMAIN_NODE_UNKNOWN": Code(_E, "a failover domain lists a node that is not a clusternode"),
    "SERVICE_DOMAIN_UNDEFINED": Code(_E, "a service or vm names a failover domain that does not exist"),
    "SERVICE_NAME_DUPLICATE": Code(_E, "two services (or two vms) have the same name"),
    "DEPEND_UNRESOLVED": Code(_E, "depend= names no existing service or vm"),
    "DEPEND_CYCLE": Code(_E, "services depend on each other in a cycle"),
    "RESOURCE_REF_UNRESOLVED": Code(_E, "ref= names no global resource of that type"),
    "RESOURCE_KEY_DUPLICATE": Code(_E, "two global resources of one type have the same primary key"),
    "RESOURCE_UNIQUE_DUPLICATE": Code(_E, "two resources of one type share a value that must be unique"),
    "RESOURCE_MAX_INSTANCES": Code(_E, "a resource is used more often than its type allows; rgmanager drops it"),
    "RESOURCE_CHILD_FORBIDDEN": Code(_E, "a resource holds a child type it may not hold"),
    "THRESHOLD_INCOMPLETE": Code(_E, "__max_failures/__max_restarts without its expire time, or the reverse"),
    "TWO_NODE_INVALID": Code(_E, "two_node=1 without exactly two one-vote nodes and expected_votes=1"),
    "MULTICAST_ADDR_INVALID": Code(_E, "a cman or totem multicast address is not a multicast address"),
    "QDISK_DEVICE_LABEL": Code(_E, "<quorumd> needs exactly one of device= and label="),
    "UNKNOWN_ELEMENT": Code(_W, "an element this library does not know; kept as is"),
    "UNKNOWN_ATTRIBUTE": Code(_W, "an attribute this library does not know; kept as is"),
    "UNKNOWN_RESOURCE_TYPE": Code(_W, "a resource type without a known agent; kept as is"),
    "SERVICE_VM_NAME_CLASH": Code(_W, "a service and a vm have the same name"),
    # -- lint (cluster_conf.lint) ---------------------------------------------------------------------------
    "NO_NODES": Code(_W, "no clusternode is defined"),
    "NO_FENCE_DEVICES": Code(_W, "nodes exist but no fence device is defined"),
    "NODE_NOT_FENCED": Code(_W, "a node has no fence method"),
    "METHOD_NO_DEVICES": Code(_W, "a fence method lists no device"),
    "FENCE_DEVICE_UNUSED": Code(_W, "a fence device is defined but no node uses it"),
    "FENCE_MANUAL": Code(_W, "fence_manual is used; it needs an operator and is not supported"),
    "CLEAN_START": Code(_W, "fence_daemon clean_start=1 disables startup fencing"),
    "POST_JOIN_DELAY_LOW": Code(_W, "post_join_delay is too short for the nodes to join before startup fencing"),
    "EVEN_NODE_COUNT": Code(_W, "an even number of nodes without two_node or a quorum disk"),
    "EXPECTED_VOTES_UNREACHABLE": Code(_W, "expected_votes exceeds all votes the configuration can provide"),
    "EXPECTED_VOTES_LOW": Code(_W, "expected_votes is below a majority of the configured votes"),
    "TWO_NODE_WITH_QDISK": Code(_W, "two_node=1 together with a quorum disk"),
    "QDISK_NODE_VOTES": Code(_W, "a quorum disk while some node has more or less than one vote"),
    "QDISK_MIN_SCORE_UNREACHABLE": Code(_W, "quorumd min_score exceeds the sum of the heuristic scores"),
    "QDISK_VOTES_LOW": Code(_W, "quorumd votes is below node count − 1"),
    "TOTEM_TOKEN_LOW": Code(_W, "totem token is below 1000 ms"),
    "TOTEM_CONSENSUS_LOW": Code(_W, "totem consensus is below 1.2 × token; corosync refuses to start"),
    "CLUSTER_NAME_TOO_LONG": Code(_W, "the cluster name is longer than 15 characters"),
    "NODE_NAMES_MIXED": Code(_W, "some nodes are named by IP address, others by host name"),
    "DOMAIN_EMPTY": Code(_W, "a restricted failover domain has no member"),
    "DOMAIN_PRIORITY_MISSING": Code(
        _W, "ordered-domain member without priority (we rank it last; rgmanager ranked it first)"
    ),
    "DOMAIN_PRIORITY_IGNORED": Code(_W, "priorities in an unordered domain are ignored"),
    "EXCLUSIVE_SINGLE_NODE": Code(_W, "an exclusive service in a restricted one-node domain"),
    "IP_ADDRESS_DUPLICATE": Code(_W, "the same IP address is defined in two services; the second loses it"),
    "RESOURCE_UNUSED": Code(_W, "a global resource no service uses"),
    "RESTARTS_NEVER_EXPIRE": Code(_W, "max_restarts without restart_expire_time: restarts are never forgotten"),
    "DEPEND_SOFT_IGNORED": Code(_W, "depend_mode=soft is only honoured with central_processing"),
    "THRESHOLD_NOT_INDEPENDENT": Code(_W, "__max_restarts on a resource that is not an independent subtree"),
    # -- editing (cluster_conf.edit; ccs_tool and the console print these when an edit is refused) ----------
    "BAD_ARGUMENT": Code(_E, "an edit argument is invalid (a reserved name, a value out of range, an unknown section)"),
    "NODE_EXISTS": Code(_E, "a node with that name already exists"),
    "NODE_NOT_FOUND": Code(_E, "no node has that name"),
    "NODEID_IN_USE": Code(_E, "another node already has that nodeid"),
    "METHOD_EXISTS": Code(_E, "the node already has a fence method of that name"),
    "METHOD_NOT_FOUND": Code(_E, "the node has no fence method of that name"),
    "DEVICE_NOT_FOUND": Code(_E, "the fence method has no device of that name"),
    "FENCE_DEVICE_EXISTS": Code(_E, "a fence device of that name already exists"),
    "FENCE_DEVICE_NOT_FOUND": Code(_E, "no fence device has that name"),
    "DOMAIN_EXISTS": Code(_E, "a failover domain of that name already exists"),
    "DOMAIN_NOT_FOUND": Code(_E, "no failover domain has that name"),
    "DOMAIN_NODE_EXISTS": Code(_E, "the node is already a member of the domain"),
    "DOMAIN_NODE_NOT_FOUND": Code(_E, "the node is not a member of the domain"),
    "RESOURCE_EXISTS": Code(_E, "a global resource of that type and key already exists"),
    "RESOURCE_NOT_FOUND": Code(_E, "no resource of that type and key exists (globally or at that place in a tree)"),
    "CHILD_FORBIDDEN": Code(_E, "the parent resource type may not hold a child of that type"),
    "SERVICE_EXISTS": Code(_E, "a service or vm of that name already exists"),
    "SERVICE_NOT_FOUND": Code(_E, "no service or vm has that name"),
    "SECTION_NOT_FOUND": Code(_E, "the cluster-wide section is not in the configuration"),
    "HEURISTIC_EXISTS": Code(_E, "the quorum disk already has a heuristic with that program"),
    "HEURISTIC_NOT_FOUND": Code(_E, "the quorum disk has no heuristic with that program"),
    "LOGGING_DAEMON_NOT_FOUND": Code(_E, "<logging> has no logging_daemon of that name"),
    "EVENT_EXISTS": Code(_E, "an <event> of that name already exists"),
    "EVENT_NOT_FOUND": Code(_E, "no <event> has that name"),
}

EDITING_CODES = frozenset(
    code for code in CODES if code in {
        "BAD_ARGUMENT", "NODE_EXISTS", "NODE_NOT_FOUND", "NODEID_IN_USE", "METHOD_EXISTS", "METHOD_NOT_FOUND",
        "DEVICE_NOT_FOUND", "FENCE_DEVICE_EXISTS", "FENCE_DEVICE_NOT_FOUND", "DOMAIN_EXISTS", "DOMAIN_NOT_FOUND",
        "DOMAIN_NODE_EXISTS", "DOMAIN_NODE_NOT_FOUND", "RESOURCE_EXISTS", "RESOURCE_NOT_FOUND", "CHILD_FORBIDDEN",
        "SERVICE_EXISTS", "SERVICE_NOT_FOUND", "SECTION_NOT_FOUND", "HEURISTIC_EXISTS", "HEURISTIC_NOT_FOUND",
        "LOGGING_DAEMON_NOT_FOUND", "EVENT_EXISTS", "EVENT_NOT_FOUND",
    }
)
"""Codes of refused edits (cluster_conf.edit): not findings about a file, so validation never emits them."""


def severity_of(code: str) -> Severity:
    return CODES[code].severity


def report(code: str, message: str, **where: object) -> Report:
    """A Report whose severity comes from the registry (KeyError for an unregistered code)."""
    return Report(code, CODES[code].severity, message, **where)  # type: ignore[arg-type]
