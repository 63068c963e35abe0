"""ccs_tool: list, query and edit cluster.conf, with the original tool's commands, layouts and messages.

    ccs_tool [-c FILE] [-o FILE|-] <command> [options] [arguments]

Options may come before or after the command. Every failure prints one line `ccs_tool: <message>` on stderr and
exits 1 (usage errors too, as the original did). See docs/cli.md for the commands, layouts and JSON shapes.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cluster_conf.cli.common import (
    CliError,
    Parser,
    UsageError,
    check_name,
    check_text,
    default_config_path,
    mask,
    parse_int_option,
    parse_pair_list,
    parse_pairs,
    print_json,
    run,
    version_text,
    warn,
)

if TYPE_CHECKING:
    from lxml import etree

    from cluster_conf.cli.editing import LocalAgent
    from cluster_conf.document import ClusterConf
    from cluster_conf.model import ClusterView

PROG = "ccs_tool"
_VALUE_OPTIONS = frozenset({"-c", "--configfile", "-o", "--outputfile"})
# Validation codes an edit may introduce without being refused (delfence of a device still in use).
DELFENCE_TOLERATED = frozenset({"FENCE_DEVICE_UNDEFINED"})


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    summary: str
    configure: Callable[[Parser], None]
    run: Callable[[argparse.Namespace], int]
    edits: bool = False  # takes -o/--outputfile
    lists: bool = False  # takes -v/--verbose and --json


COMMANDS: dict[str, Command] = {}
ALIASES = {"lsdomains": "lsdomain", "lsresources": "lsresource", "lsservices": "lsservice", "lsvm": "lsservice"}


def command(name: str, usage: str, summary: str, *, edits: bool = False, lists: bool = False):
    """Register `run` as a ccs_tool command; `configure` (set as run.configure) adds its own arguments."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        configure = getattr(fn, "configure", lambda parser: None)
        COMMANDS[name] = Command(name, usage, summary, configure, fn, edits, lists)
        return fn

    return register


def arguments(configure: Callable[[Parser], None]):
    """Attach a parser-configuring function to a command function (apply below @command)."""

    def attach(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        fn.configure = configure  # type: ignore[attr-defined]
        return fn

    return attach


# -- entry point -------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    name, prefix, rest = split_command(argv)
    if "-V" in prefix or "--version" in prefix:
        sys.stdout.write(version_text(PROG))
        return 0
    if name is None or name == "help" or "-h" in prefix or "--help" in prefix:
        return _help(name, rest, prefix)
    spec = COMMANDS.get(ALIASES.get(name, name))
    if spec is None:
        raise UsageError(f"Unknown command, {name}. Try 'ccs_tool help' for help.")
    opts = build_parser(spec).parse_intermixed_args(prefix + rest)
    check_arguments(opts)
    return spec.run(opts)


def split_command(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """(command, options before it, everything after it). Only -c and -o take a value before the command."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _VALUE_OPTIONS:
            i += 2
        elif token.startswith("-") and token != "-":
            i += 1
        else:
            return token, list(argv[:i]), list(argv[i + 1 :])
    return None, list(argv), []


def _help(name: str | None, rest: list[str], prefix: list[str]) -> int:
    if name is None and not prefix:  # no command at all: the usage, on stderr, and a failure exit
        sys.stderr.write(usage_text())
        return 1
    if name is None and not ({"-h", "--help"} & set(prefix)):
        raise UsageError("Too few arguments. Try 'ccs_tool help' for help.")
    topic = rest[0] if name == "help" and rest else None
    spec = COMMANDS.get(ALIASES.get(topic, topic)) if topic else None
    if topic and spec is None:
        raise UsageError(f"Unknown command, {topic}. Try 'ccs_tool help' for help.")
    sys.stdout.write(build_parser(spec).format_help() if spec else usage_text())
    return 0


def usage_text() -> str:
    lines = [
        "Usage:",
        "  ccs_tool [options] <command> [command options] [arguments]",
        "",
        "Options (before or after the command):",
        f"  -c --configfile FILE   configuration file (default {default_config_path()})",
        "  -o --outputfile FILE   editing commands: write here instead of in place ('-' = stdout)",
        "  -h --help              print this usage (or 'ccs_tool <command> -h') and exit",
        "  -V --version           print the version and exit",
        "",
        "Commands:",
    ]
    width = max(len(c.usage) for c in COMMANDS.values())
    lines += [f"  {c.usage:<{width}}  {c.summary}" for c in COMMANDS.values()]
    lines += ["", "Exit status: 0 on success, 1 on any error (usage errors included).", ""]
    return "\n".join(lines)


def build_parser(spec: Command) -> Parser:
    parser = Parser(prog=f"{PROG} {spec.name}", usage=f"{PROG} {spec.usage}", description=spec.summary)
    parser.add_argument("-c", "--configfile", metavar="FILE", help="configuration file")
    if spec.edits:
        parser.add_argument("-o", "--outputfile", metavar="FILE", help="write here instead ('-' = stdout)")
        parser.add_argument("-C", "--no_ccs", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("-F", "--force_ccs", action="store_true", help=argparse.SUPPRESS)
    if spec.lists:
        parser.add_argument("-v", "--verbose", action="store_true", help="print all properties")
        parser.add_argument("--json", action="store_true", help="print JSON (shape in docs/cli.md)")
    spec.configure(parser)
    return parser


# -- shared helpers ----------------------------------------------------------------------------------------
def config_path(opts: argparse.Namespace) -> str:
    return opts.configfile or default_config_path()


def load_view(opts: argparse.Namespace) -> ClusterView:
    from cluster_conf.cli.editing import load
    from cluster_conf.model import view

    return view(load(config_path(opts)))


# Command-line values that become names or values in the document, with the words that name them in a refusal.
# `key=value` lists (params, --parent) are checked by parse_pairs; file paths (-c, -o, update/diff files) never
# enter the document and are left alone; integers are checked by parse_int_option.
_TEXT_ARGUMENTS = {
    "node": "node name",
    "name": "name",
    "agent": "fence agent",
    "altname": "altname",
    "fence_type": "fence device name",
    "clustername": "cluster name",
    "members": "domain member",
    "domain": "domain name",
    "service": "service name",
    "key": "resource key",
    "multicast": "multicast address",
    "xpath": "XPath expression",
}
# Values that become element names.
_NAME_ARGUMENTS = {"type": "resource type"}


def check_arguments(opts: argparse.Namespace) -> None:
    """Refuse, before anything is loaded, a name or value the XML document could not hold (control characters,
    bytes that are not UTF-8, a resource type that is not an XML name) with one line naming the argument."""
    for dest, label in _TEXT_ARGUMENTS.items():
        value = getattr(opts, dest, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                check_text(label, item)
    for dest, label in _NAME_ARGUMENTS.items():
        value = getattr(opts, dest, None)
        if isinstance(value, str):
            check_name(label, value)


def edit_config(
    opts: argparse.Namespace, change: Callable[[ClusterConf], object], *, tolerated: frozenset[str] = frozenset()
) -> object:
    from cluster_conf.cli.editing import edit_file

    return edit_file(config_path(opts), opts.outputfile, change, tolerated=tolerated)


def _list(opts: argparse.Namespace, text: Callable[..., str], as_json: Callable[[ClusterView], dict]) -> int:
    cluster = load_view(opts)
    if opts.json:
        print_json(as_json(cluster))
    else:
        sys.stdout.write(text(cluster, verbose=opts.verbose))
    return 0


# -- list commands -----------------------------------------------------------------------------------------
def _list_command(name: str, summary: str) -> None:
    """Register `NAME [-v] [--json]`, rendered by listing.NAME_text / listing.NAME_json."""

    @command(name, f"{name} [-v] [--json]", summary, lists=True)
    def run(opts: argparse.Namespace) -> int:
        from cluster_conf.cli import listing

        return _list(opts, getattr(listing, f"{name}_text"), getattr(listing, f"{name}_json"))


for _name, _summary in (
    ("lsnode", "List nodes"),
    ("lsfence", "List fence devices (secrets shown as ********)"),
    ("lsdomain", "List failover domains"),
    ("lsresource", "List global resources"),
    ("lsservice", "List services and VMs with their resource trees"),
):
    _list_command(_name, _summary)


# -- query -------------------------------------------------------------------------------------------------
_LITE_STEP = r"[A-Za-z_][\w.-]*(?:\[(?:[0-9]+|@[\w.-]+=(?:\"[^\"]*\"|'[^']*'))\])*"
_XPATH_LITE = re.compile(rf"(?:/{_LITE_STEP})+(?:/@[\w.-]+)?")


def _query_args(parser: Parser) -> None:
    parser.add_argument("-n", dest="lite", action="store_true", help="disable full XPath (xpath-lite paths only)")
    parser.add_argument("--show-secrets", action="store_true", help="print secret attribute values as they are")
    parser.add_argument("xpath", nargs="+", help="XPath expression, e.g. /cluster/@config_version")


@command("query", "query [-n] [--show-secrets] <xpath>...", "Print the values an XPath expression selects")
@arguments(_query_args)
def cmd_query(opts: argparse.Namespace) -> int:
    from cluster_conf.cli.editing import load

    conf = load(config_path(opts))
    for expression in opts.xpath:
        for line in query_values(conf, expression, lite=opts.lite, show_secrets=opts.show_secrets):
            sys.stdout.write(line + "\n")
    return 0


def query_values(conf: ClusterConf, expression: str, *, lite: bool = False, show_secrets: bool = False) -> list[str]:
    """The printable values `expression` selects: attribute values, element text, or a computed value."""
    from lxml import etree

    if lite and not _XPATH_LITE.fullmatch(expression):
        raise CliError(f"Query failed: {expression!r} is not an xpath-lite path (drop -n for full XPath)")
    if not show_secrets:
        read = secret_read(expression, _secret_names(conf))
        if read:
            raise CliError(f"Query failed: the expression reads a secret attribute ({read}); "
                           "add --show-secrets to allow it")
    try:
        result = conf.tree.xpath(expression)
    except etree.XPathError as exc:
        raise CliError(f"Query failed: invalid XPath expression {expression!r}: {exc}") from None
    if isinstance(result, bool):
        return ["true" if result else "false"]
    if isinstance(result, float):
        return [str(int(result)) if result.is_integer() else str(result)]
    if isinstance(result, str):
        return [_query_string(result, show_secrets)]
    values = [_query_item(item, show_secrets) for item in result]
    if not values:
        raise CliError(f"Query failed: nothing matches {expression}")
    return values


# XPath 1.0 tokens (section 3.7). `*` and names are sorted into name tests and operators afterwards.
_NCNAME = r"[^\W\d][\w.-]*"
_XPATH_TOKEN = re.compile(
    rf"""\s*(?:
      (?P<literal>"[^"]*"|'[^']*')
    | (?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
    | (?P<punct>\.\.|::|[()\[\],@.])
    | (?P<op>//|!=|<=|>=|[/|+=<>*-])
    | (?P<variable>\${_NCNAME}(?::{_NCNAME})?)
    | (?P<name>{_NCNAME}(?::(?!:)(?:{_NCNAME}|\*))?)
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_NODE_TYPES = frozenset({"node", "text", "comment", "processing-instruction"})
_PATH_OPERATORS = frozenset({"/", "//", "|"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # literal, number, punct, op, variable, name (a name test, function, axis or node type), other
    text: str
    depth: int  # how many ( and [ enclose it


def _xpath_tokens(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    depth = 0
    pos = 0
    while pos < len(expression) and not expression[pos:].isspace():
        match = _XPATH_TOKEN.match(expression, pos)
        assert match is not None and match.lastgroup is not None  # `other` takes any non-space character
        kind, text = match.lastgroup, match.group(match.lastgroup)
        pos = match.end()
        if kind in ("op", "name") and (text == "*" or kind == "name"):
            # XPath 1.0 §3.7: after a token other than @ :: ( [ , or an operator, * multiplies and a name is
            # an operator (and, or, mod, div); otherwise both are name tests.
            prev = tokens[-1] if tokens else None
            after_operand = prev is not None and prev.kind != "op" and prev.text not in ("@", "::", "(", "[", ",")
            kind = "op" if after_operand else "name"
        if text in (")", "]"):
            depth -= 1
        tokens.append(_Token(kind, text, depth))
        if text in ("(", "["):
            depth += 1
    return tokens


def secret_read(expression: str, document_secrets: Collection[str]) -> str | None:
    """What secret attribute `expression` would let out (`passwd`, or `@*, which can match passwd`), or None.

    Every attribute step (`@x`, `attribute::x`) is looked at. It is harmless in two places only: as the last step
    of a plain location path (`//fencedevice/@passwd`, `a/@x | b/@y`), whose values query masks, and as a bare
    existence test (`//device[@passwd]`). Anywhere else (inside a function call such as string() or concat(), in
    a comparison, followed by a predicate) the value itself reaches the result, so a secret name is refused, and
    so is a wildcard (`@*`, `attribute::node()`) when the document holds any secret attribute."""
    from cluster_conf.schema import is_secret

    tokens = _xpath_tokens(expression)
    plain_path = all(t.depth > 0 or t.kind not in ("op", "other") or t.text in _PATH_OPERATORS for t in tokens)
    for i, token in enumerate(tokens):
        if token.text == "@" and token.kind == "punct":
            test = i + 1
        elif token.kind == "name" and token.text == "attribute" and i + 1 < len(tokens) and tokens[i + 1].text == "::":
            test = i + 2
        else:
            continue
        if test >= len(tokens) or tokens[test].kind != "name":
            continue  # not a valid step; lxml reports the syntax error
        name = tokens[test].text
        end = test
        if name in _NODE_TYPES and end + 1 < len(tokens) and tokens[end + 1].text == "(":
            end += 1
            while end < len(tokens) and tokens[end].text != ")":
                end += 1
            name = "*"
        following = tokens[end + 1] if end + 1 < len(tokens) else None
        last_step = token.depth == 0 and plain_path and (following is None or following.text == "|")
        existence_test = i > 0 and tokens[i - 1].text == "[" and following is not None and following.text == "]"
        if last_step or existence_test:
            continue
        local = name.rpartition(":")[2]
        if local == "*":
            if document_secrets:
                return f"@*, which can match {', '.join(sorted(document_secrets))}"
        elif is_secret(local):
            return local
    return None


def _secret_names(conf: ClusterConf) -> set[str]:
    """The secret attribute names (passwd, ...) that occur in the document."""
    from cluster_conf.schema import is_secret

    names = set()
    for element in conf.root.iter():
        if isinstance(element.tag, str):
            names.update(k.rpartition("}")[2] for k in element.attrib if is_secret(k.rpartition("}")[2]))
    return names


def _query_string(value: str, show_secrets: bool) -> str:
    attrname = getattr(value, "attrname", None)
    if attrname and not show_secrets:
        return mask(str(attrname), str(value))
    return str(value)


def _query_item(item: object, show_secrets: bool) -> str:
    from lxml import etree

    if isinstance(item, str):
        return _query_string(item, show_secrets)
    if isinstance(item, etree._Element):
        return _element_summary(item, show_secrets)
    return str(item)


def _element_summary(element: etree._Element, show_secrets: bool) -> str:
    """An element's own text when it has some, else `tag k=v ...` (secrets masked)."""
    if not isinstance(element.tag, str):  # comment or processing instruction
        return (element.text or "").strip()
    text = (element.text or "").strip()
    if text:
        return text
    attrs = [f"{k}={v if show_secrets else mask(str(k), str(v))}" for k, v in element.attrib.items()]
    return " ".join([str(element.tag), *attrs])


# -- create ------------------------------------------------------------------------------------------------
def _create_args(parser: Parser) -> None:
    parser.add_argument("-o", "--outputfile", metavar="FILE", help="write here ('-' = stdout)")
    parser.add_argument("-2", dest="two_node", action="store_true", help="a two-node cluster (cman two_node=1)")
    parser.add_argument("-n", dest="nodes", metavar="N", help="add N placeholder nodes NEEDNAME-01..")
    parser.add_argument("-f", dest="agent", metavar="AGENT", help="add a fence device for this agent")
    parser.add_argument("clustername")


@command("create", "create [-2] [-n N] [-f AGENT] <clustername>", "Create a skeleton config file")
@arguments(_create_args)
def cmd_create(opts: argparse.Namespace) -> int:
    import os

    from cluster_conf import edit
    from cluster_conf.reports import ConfigError

    nodes = parse_int_option("n", opts.nodes) if opts.nodes is not None else 0
    target = opts.outputfile or config_path(opts)
    if target != "-" and os.path.lexists(target):
        raise CliError(f"{target} already exists")
    try:
        conf = edit.new_cluster(opts.clustername, two_node=opts.two_node, nodes=nodes, fence_agent=opts.agent)
    except ConfigError as exc:  # "invalid cluster name 'a b'", without the <string>: error BAD_ARGUMENT prefix
        raise CliError(exc.report.message) from None
    if target == "-":
        sys.stdout.write(conf.to_string())
    else:
        _save_new(conf, target)
    return 0


def _save_new(conf: ClusterConf, target: str) -> None:
    try:
        conf.save(target, keep_old=False)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


# -- nodes -------------------------------------------------------------------------------------------------
def _addnode_args(parser: Parser) -> None:
    parser.add_argument("-n", "--nodeid", help="node id (required)")
    parser.add_argument("-v", "--votes", help="votes (default 1)")
    parser.add_argument("-a", "--altname", help="alternative name/interface for multihomed hosts")
    parser.add_argument("-f", "--fence_type", help="fence device to use (required; must exist)")
    parser.add_argument("node")
    parser.add_argument("params", nargs="*", metavar="fencearg=value")


@command(
    "addnode",
    "addnode -n <nodeid> [-v votes] [-a altname] -f <fencedev> <node> [arg=val]...",
    "Add a node",
    edits=True,
)
@arguments(_addnode_args)
def cmd_addnode(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    votes = parse_int_option("v", opts.votes) if opts.votes is not None else 1
    nodeid = parse_int_option("n", opts.nodeid) if opts.nodeid is not None else None
    params = parse_pairs(opts.params)
    if nodeid is None:
        raise CliError("nodeid not specified")
    if opts.fence_type is None:
        raise CliError("fence type not specified (-f)")

    def change(conf: ClusterConf) -> None:
        edit.add_node(
            conf,
            opts.node,
            nodeid=nodeid,
            votes=votes,
            altname=opts.altname,
            fence_device=opts.fence_type,
            device_params=params,
        )

    edit_or_report(opts, change)
    return 0


def edit_or_report(opts: argparse.Namespace, change: Callable[[ClusterConf], object], **kw: frozenset[str]) -> Any:
    """Run an edit; a refusal from the edit API is reported with its message alone, as the original did."""
    from cluster_conf.reports import ConfigError

    try:
        return edit_config(opts, change, **kw)
    except ConfigError as exc:
        if exc.report.code.startswith(("FILE_", "XML_", "ROOT_")):
            raise
        raise CliError(exc.report.message) from None


def _name_arg(parser: Parser) -> None:
    parser.add_argument("name")


@command("delnode", "delnode <node>", "Delete a node", edits=True)
@arguments(_name_arg)
def cmd_delnode(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    domains = edit_or_report(opts, lambda conf: edit.remove_node(conf, opts.name))
    if domains:
        warn(PROG, f"node {opts.name} was removed from failover domain(s): {', '.join(domains)}")
    return 0


def _addnodeids_args(parser: Parser) -> None:
    parser.add_argument("-n", "--nodeid", help="first node id to assign (default 1)")
    parser.add_argument("-m", "--multicast", help="set or change the multicast address")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the ids assigned")


@command("addnodeids", "addnodeids [-n start] [-m mcast] [-v]", "Assign node IDs to nodes without one", edits=True)
@arguments(_addnodeids_args)
def cmd_addnodeids(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    start = parse_int_option("n", opts.nodeid) if opts.nodeid is not None else 1
    if opts.multicast is not None and not _is_multicast_address(opts.multicast):
        raise CliError(f"{opts.multicast} is not a valid multicast address")
    had_multicast: list[bool] = []

    def change(conf: ClusterConf) -> list[tuple[str, int]]:
        cman = conf.section("cman")
        had_multicast.append(cman is not None and cman.find("multicast") is not None)
        if opts.multicast is not None:
            edit.set_multicast(conf, opts.multicast)
        return edit.add_node_ids(conf, start)

    assigned = edit_or_report(opts, change)
    if not had_multicast[0] and opts.multicast is None:
        sys.stderr.write(
            "\nWARNING: The cluster does not have a multicast address.\n"
            "A default will be assigned a run-time which might not suit your installation\n\n"
        )
    if opts.verbose:
        for name, nodeid in assigned:
            sys.stderr.write(f"Node {name} now has id {nodeid}\n")
    return 0


def _is_multicast_address(text: str) -> bool:
    """An IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast address."""
    import ipaddress

    try:
        return ipaddress.ip_address(text).is_multicast
    except ValueError:
        return False


# -- fence devices -----------------------------------------------------------------------------------------
def _addfence_args(parser: Parser) -> None:
    parser.add_argument("name")
    parser.add_argument("agent")
    parser.add_argument("params", nargs="*", metavar="param=value")


@command("addfence", "addfence <name> <agent> [param=value]...", "Add a fence device", edits=True)
@arguments(_addfence_args)
def cmd_addfence(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    params = parse_pairs(opts.params)
    edit_or_report(opts, lambda conf: edit.add_fence_device(conf, opts.name, opts.agent, params))
    return 0


@command("delfence", "delfence <name>", "Delete a fence device (allowed while nodes still use it)", edits=True)
@arguments(_name_arg)
def cmd_delfence(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    users = edit_or_report(
        opts, lambda conf: edit.remove_fence_device(conf, opts.name), tolerated=DELFENCE_TOLERATED
    )
    if users:
        warn(PROG, f"fence device {opts.name} is still used by {', '.join(users)}; add it back or change them")
    return 0


# -- failover domains --------------------------------------------------------------------------------------
def _adddomain_args(parser: Parser) -> None:
    parser.add_argument("--ordered", action="store_true", help="members are tried in priority order")
    parser.add_argument("--restricted", action="store_true", help="services run only on members")
    parser.add_argument("--nofailback", action="store_true", help="do not move back to a preferred member")
    parser.add_argument("name")
    parser.add_argument("members", nargs="*", metavar="node[:priority]")


@command(
    "adddomain",
    "adddomain [--ordered] [--restricted] [--nofailback] <name> [node[:priority]]...",
    "Add a failover domain",
    edits=True,
)
@arguments(_adddomain_args)
def cmd_adddomain(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    members = [_member(token) for token in opts.members]

    def change(conf: ClusterConf) -> None:
        edit.add_domain(
            conf,
            opts.name,
            ordered=opts.ordered,
            restricted=opts.restricted,
            nofailback=opts.nofailback,
            members=members,
        )

    edit_or_report(opts, change)
    return 0


def _member(token: str) -> tuple[str, int | None]:
    name, sep, priority = token.rpartition(":")
    if not sep:
        return token, None
    return name, parse_int_option("priority", priority, minimum=1)


@command("deldomain", "deldomain <name>", "Delete a failover domain", edits=True)
@arguments(_name_arg)
def cmd_deldomain(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    edit_or_report(opts, lambda conf: edit.remove_domain(conf, opts.name))
    return 0


def _domainnode_args(parser: Parser) -> None:
    parser.add_argument("domain")
    parser.add_argument("node")
    parser.add_argument("priority", nargs="?")


@command("adddomainnode", "adddomainnode <domain> <node> [priority]", "Add a node to a failover domain", edits=True)
@arguments(_domainnode_args)
def cmd_adddomainnode(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    priority = parse_int_option("priority", opts.priority, minimum=1) if opts.priority is not None else None
    edit_or_report(opts, lambda conf: edit.add_domain_node(conf, opts.domain, opts.node, priority))
    return 0


def _deldomainnode_args(parser: Parser) -> None:
    parser.add_argument("domain")
    parser.add_argument("node")


@command("deldomainnode", "deldomainnode <domain> <node>", "Remove a node from a failover domain", edits=True)
@arguments(_deldomainnode_args)
def cmd_deldomainnode(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    edit_or_report(opts, lambda conf: edit.remove_domain_node(conf, opts.domain, opts.node))
    return 0


# -- resources and services --------------------------------------------------------------------------------
def _addresource_args(parser: Parser) -> None:
    parser.add_argument("type", help="resource type: ip, fs, script, nfsexport, ...")
    parser.add_argument("params", nargs="+", metavar="param=value")


@command("addresource", "addresource <type> param=value...", "Define a global resource", edits=True)
@arguments(_addresource_args)
def cmd_addresource(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    params = parse_pairs(opts.params)
    edit_or_report(opts, lambda conf: edit.add_resource(conf, opts.type, params))
    return 0


def _delresource_args(parser: Parser) -> None:
    parser.add_argument("type")
    parser.add_argument("key", help="the resource's primary key (address for ip, name for most)")


@command("delresource", "delresource <type> <key>", "Delete a global resource", edits=True)
@arguments(_delresource_args)
def cmd_delresource(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    edit_or_report(opts, lambda conf: edit.remove_resource(conf, opts.type, opts.key))
    return 0


def _addservice_args(parser: Parser) -> None:
    parser.add_argument("--vm", action="store_true", help="add a <vm> instead of a <service>")
    parser.add_argument("name")
    parser.add_argument("params", nargs="*", metavar="attr=value", help="domain=, autostart=, recovery=, ...")


@command("addservice", "addservice [--vm] <name> [attr=value]...", "Add a service (or VM)", edits=True)
@arguments(_addservice_args)
def cmd_addservice(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    params = parse_pairs(opts.params)
    kind = "vm" if opts.vm else "service"
    edit_or_report(opts, lambda conf: edit.add_service(conf, opts.name, params, kind=kind))
    return 0


@command("delservice", "delservice <name>", "Delete a service or VM (name, service:name or vm:name)", edits=True)
@arguments(_name_arg)
def cmd_delservice(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    edit_or_report(opts, lambda conf: edit.remove_service(conf, opts.name))
    return 0


def _addserviceresource_args(parser: Parser) -> None:
    parser.add_argument(
        "--parent",
        action="append",
        default=[],
        metavar="type=key",
        help="path to the parent resource inside the service, one step per option",
    )
    parser.add_argument("service")
    parser.add_argument("type")
    parser.add_argument("params", nargs="*", metavar="attr=value", help="ref=<key> to use a global resource")


@command(
    "addserviceresource",
    "addserviceresource [--parent type=key]... <service> <type> [attr=value]...",
    "Add a resource (ref= or inline) to a service's tree",
    edits=True,
)
@arguments(_addserviceresource_args)
def cmd_addserviceresource(opts: argparse.Namespace) -> int:
    from cluster_conf import edit

    params = parse_pairs(opts.params)
    path = parse_pair_list(opts.parent, what="resource type")
    edit_or_report(
        opts, lambda conf: edit.add_child_resource(conf, opts.service, opts.type, params, parent_path=path)
    )
    return 0


# -- update ------------------------------------------------------------------------------------------------
def _update_args(parser: Parser) -> None:
    parser.add_argument("-o", "--outputfile", metavar="FILE", help="install here instead (local, no propagation)")
    parser.add_argument("-C", "--no_ccs", action="store_true",
                        help="install on this node only, without the agent (no propagation)")
    parser.add_argument("file", help="the proposed new cluster.conf")


@command("update", "update [-C] <file>", "Check a new config file, install it and propagate it to every node")
@arguments(_update_args)
def cmd_update(opts: argparse.Namespace) -> int:
    """Through this node's ricci agent when the target is the node's own configuration and the node has an agent
    (etc/ricci/ricci.json); otherwise (-C, -o, -c another file, or no agent) a checked local install."""
    from cluster_conf import validate
    from cluster_conf.cli.editing import cluster_root, load, local_agent

    proposed = load(opts.file)
    errors = [r for r in validate(proposed, lint=False) if r.is_error]
    if errors:
        raise CliError(
            f"proposed config file {opts.file} is invalid; not updating",
            details=[r.format(opts.file) for r in errors],
        )
    if proposed.config_version is None:
        raise CliError(f"proposed config file {opts.file} has no integer config_version")
    own_config = not opts.outputfile and _same_file(config_path(opts), default_config_path())
    agent = local_agent(cluster_root()) if own_config and not opts.no_ccs else None
    if agent is None:
        if own_config and not opts.no_ccs:
            warn(PROG, f"this node has no ricci agent ({cluster_root().rstrip('/')}/etc/ricci/ricci.json is "
                       "missing): installing on this node only")
        return _update_local(opts, proposed)
    return _update_through_agent(agent, proposed)


def _same_file(a: str, b: str) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b)


def _not_greater(old: object, new: object) -> CliError:
    return CliError(
        "Proposed updated config file does not have greater version number.",
        details=[f"Current config_version :: {old}", f"Proposed config_version:: {new}"],
    )


def _update_local(opts: argparse.Namespace, proposed: ClusterConf) -> int:
    from cluster_conf.cli.editing import load, write

    current = load(config_path(opts))
    old, new = current.config_version, proposed.config_version
    assert new is not None
    if old is not None and new <= old:
        raise _not_greater(old, new)
    proposed.source = current.source
    write(proposed, opts.outputfile)
    sys.stdout.write(f"Config file updated from version {old or 0} to {new}\n\nUpdate complete.\n")
    return 0


def _update_through_agent(agent: LocalAgent, proposed: ClusterConf) -> int:
    """Push to the local agent with propagate=true and report what every node did.

    Exit 0 when every node has the new version or was unreachable (an unreachable node catches up by itself when
    its agent is back, and is named in a warning); exit 1 when the agent or a peer refused it."""
    from cluster_conf.cli.editing import AgentRefusal, outcome_lines, push_config

    try:
        result = push_config(agent, proposed, propagate=True)
    except AgentRefusal as exc:
        if exc.code in ("version_not_greater", "same_version_differs"):
            details = exc.agent_details
            raise _not_greater(details.get("current", "?"), details.get("proposed", proposed.config_version)) from None
        raise CliError(exc.message, details=_report_lines(exc.agent_details)) from None
    old, new = result.old_version, result.new_version
    if old == new:
        sys.stdout.write(f"Config file is already at version {new}\n")
    else:
        sys.stdout.write(f"Config file updated from version {old or 0} to {new}\n")
    for line in outcome_lines(result):
        sys.stdout.write(line + "\n")
    refused = {n: o for n, o in result.failed.items() if o[0] != "unreachable"}
    for name, (outcome, _) in sorted(result.failed.items()):
        if outcome == "unreachable":
            warn(PROG, f"{name} did not get version {new} (unreachable); it catches up when its agent is back")
    if refused:
        names = ", ".join(sorted(refused))
        raise CliError(f"Update incomplete: {names} refused version {new}")
    sys.stdout.write("\nUpdate complete.\n")
    return 0


def _report_lines(details: dict) -> list[str]:
    """The validation reports an agent sent back with a refusal, one line each (docs/ricci-protocol.md)."""
    reports = details.get("reports") if isinstance(details, dict) else None
    lines = []
    for report in reports if isinstance(reports, list) else []:
        if isinstance(report, dict):
            where = f"line {report['line']}: " if report.get("line") else ""
            kind = f"{report.get('severity', 'error')} {report.get('code', '')}"
            lines.append(f"{where}{kind}: {report.get('message', '')}")
    return lines


# -- validate and diff -------------------------------------------------------------------------------------
def _validate_args(parser: Parser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="add each report's hint")
    parser.add_argument("-q", "--quiet", action="store_true", help='do not print "Configuration validates"')
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-lint", action="store_true", help="no lint warnings")


@command("validate", "validate [-v] [-q] [--json] [--no-lint]", "Same as ccs_config_validate -f <configfile>")
@arguments(_validate_args)
def cmd_validate(opts: argparse.Namespace) -> int:
    from cluster_conf.cli import ccs_config_validate

    argv = ["-f", config_path(opts)]
    for flag in ("verbose", "quiet", "json", "no_lint"):
        if getattr(opts, flag):
            argv.append("--" + flag.replace("_", "-"))
    return ccs_config_validate.main(argv)


def _diff_args(parser: Parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (docs/diff.md)")
    parser.add_argument("old", help="the older cluster.conf")
    parser.add_argument("new", help="the newer cluster.conf")


@command("diff", "diff [--json] <old> <new>", "Show what changed between two config files (secrets hidden)")
@arguments(_diff_args)
def cmd_diff(opts: argparse.Namespace) -> int:
    from cluster_conf.cli.editing import load
    from cluster_conf.diff import diff

    result = diff(load(opts.old), load(opts.new))
    if opts.json:
        print_json(result.to_dict())
    else:
        sys.stdout.write(result.to_text() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
