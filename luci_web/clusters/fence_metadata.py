"""What a fence device form asks for: the parameters of a fence agent, read from the agent itself
(`<agent> -o metadata`, the fence-agents convention) when it is installed under /usr/sbin, otherwise a generic
key=value form. The answer is cached per process: agents do not change while luci runs.

Deprecated parameters are kept (marked): they are the names RHCS-era files use (ipaddr, login, passwd).
Parameters that only make sense on a command line (action, help, verbose, ...) and per-node ones (port, plug:
they belong to each node's fence instance, not to the shared device) are left out. A parameter is secret when
cluster_conf.schema.is_secret says so: its form field is write-only.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from cluster_conf.schema import is_secret

AGENT_DIR = Path("/usr/sbin")
METADATA_TIMEOUT = 5.0
METADATA_LIMIT = 1 << 20  # an agent printing more than 1 MiB of metadata is not trusted
AGENT_NAME = re.compile(r"fence_[A-Za-z0-9_]{1,60}")
# Command-line switches and per-node instance parameters: not attributes of a <fencedevice>.
NOT_DEVICE_PARAMS = frozenset({
    "action", "help", "version", "verbose", "verbose_level", "quiet", "debug", "debug_file", "plug_separator",
    "separator", "port", "plug", "port_as_ip", "nodename",
})


@dataclass(frozen=True, slots=True)
class FenceParam:
    name: str
    type: str = "string"  # string, boolean, integer, second, select
    required: bool = False
    shortdesc: str = ""
    default: str | None = None
    secret: bool = False
    choices: tuple[str, ...] = ()
    deprecated: bool = False  # an older name (ipaddr, login, passwd: what RHCS-era cluster.conf files use)


@dataclass(frozen=True, slots=True)
class AgentForm:
    """The form for one agent. `generic`: no metadata (the agent is absent or its metadata unreadable; `problem`
    says why), so every parameter is entered as key=value."""

    agent: str
    shortdesc: str = ""
    params: tuple[FenceParam, ...] = ()
    generic: bool = True
    problem: str = ""

    def param(self, name: str) -> FenceParam | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


def valid_agent_name(agent: str) -> bool:
    return AGENT_NAME.fullmatch(agent or "") is not None


def agent_path(agent: str) -> Path | None:
    """The installed agent's executable, or None (a name that is not fence_<word> is never looked up)."""
    if not valid_agent_name(agent):
        return None
    path = AGENT_DIR / agent
    return path if path.is_file() and os.access(path, os.X_OK) else None


def installed_agents() -> list[str]:
    """Every fence agent installed under AGENT_DIR, sorted."""
    try:
        names = [p.name for p in AGENT_DIR.iterdir()]
    except OSError:
        return []
    return sorted(n for n in names if valid_agent_name(n) and agent_path(n) is not None)


def _text(element: etree._Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def parse_metadata(xml: bytes, agent: str) -> AgentForm:
    """The device parameters in an agent's metadata (ValueError when it is not fence-agent metadata)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{agent} -o metadata: not XML ({exc.msg})") from None
    if root.tag != "resource-agent":
        raise ValueError(f"{agent} -o metadata: <{root.tag}> is not <resource-agent>")
    params = []
    seen = set()
    for element in root.iterfind("parameters/parameter"):
        name = element.get("name") or ""
        if not name or name in NOT_DEVICE_PARAMS or name in seen:
            continue
        seen.add(name)
        content = element.find("content")
        ptype = content.get("type", "string") if content is not None else "string"
        choices = tuple(o.get("value", "") for o in content.iterfind("option")) if content is not None else ()
        shortdesc = _text(element.find("shortdesc[@lang='en']")) or _text(element.find("shortdesc"))
        params.append(FenceParam(
            name=name, type=ptype, required=element.get("required") == "1", shortdesc=shortdesc,
            default=content.get("default") if content is not None else None, secret=is_secret(name),
            choices=choices, deprecated=element.get("deprecated") == "1"))
    return AgentForm(agent=root.get("name") or agent, shortdesc=root.get("shortdesc", ""), params=tuple(params),
                     generic=False)


def _run_metadata(path: Path) -> bytes:
    result = subprocess.run(
        [str(path), "-o", "metadata"], stdin=subprocess.DEVNULL, capture_output=True, timeout=METADATA_TIMEOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}, check=False)
    if result.returncode != 0:
        raise ValueError(f"{path.name} -o metadata exited with status {result.returncode}")
    if len(result.stdout) > METADATA_LIMIT:
        raise ValueError(f"{path.name} -o metadata printed more than {METADATA_LIMIT} bytes")
    return result.stdout


@functools.lru_cache(maxsize=256)
def agent_form(agent: str) -> AgentForm:
    """The form for `agent`: from its metadata when installed, otherwise generic (cached per process)."""
    path = agent_path(agent)
    if path is None:
        why = "not a fence agent name" if not valid_agent_name(agent) else f"{agent} is not installed on this host"
        return AgentForm(agent=agent, problem=why)
    try:
        return parse_metadata(_run_metadata(path), agent)
    except subprocess.TimeoutExpired:
        return AgentForm(agent=agent, problem=f"{agent} -o metadata gave no answer within {METADATA_TIMEOUT:g} s")
    except (OSError, ValueError) as exc:
        return AgentForm(agent=agent, problem=str(exc))
