"""The generic `ocf` agent: runs any installed OCF resource agent (`<ocf provider="heartbeat" type="Dummy" .../>`).

The agent program is `$OCF_ROOT/resource.d/PROVIDER/TYPE` (OCF_ROOT defaults to /usr/lib/ocf). It receives the
OCF environment: OCF_ROOT, OCF_RA_VERSION_MAJOR/MINOR, OCF_RESOURCE_INSTANCE (the resource's name),
OCF_RESOURCE_TYPE, OCF_RESOURCE_PROVIDER, OCF_CHECK_LEVEL (the status depth) and one OCF_RESKEY_<param> per
resource attribute. `status` runs the agent's `monitor`. Before start and in validate-all, the agent's own
meta-data is parsed: a missing required parameter or a parameter the agent does not declare is an error
(OCF_ERR_CONFIGURED) naming it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cluster_conf.reports import ConfigError
from cluster_conf.xmlsafe import parse as parse_xml
from rgmanager.agents.base import (
    DEFAULT_TIMEOUTS,
    OCF,
    Agent,
    AgentError,
    Result,
    one_line,
    register,
    run_process,
)

DEFAULT_OCF_ROOT = "/usr/lib/ocf"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# Attributes of the <ocf> element that select the agent rather than configure it.
SELECTOR_ATTRS = frozenset({"name", "provider", "type", "ref"})


@dataclass(frozen=True, slots=True)
class OcfParameter:
    name: str
    required: bool = False
    unique: bool = False
    default: str | None = None


@dataclass(frozen=True, slots=True)
class OcfMetaData:
    parameters: tuple[OcfParameter, ...]
    actions: tuple[str, ...]
    text: str

    def parameter(self, name: str) -> OcfParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


_META_CACHE: dict[tuple[str, float], OcfMetaData] = {}


def parse_meta_data(text: str, source: str = "meta-data") -> OcfMetaData:
    """The parameters and action names of an OCF agent's meta-data XML (parsed with the hardened parser)."""
    try:
        root = parse_xml(text.encode("utf-8"), source).getroot()
    except ConfigError as exc:
        raise AgentError(OCF.ERR_GENERIC, f"{source}: meta-data is not valid XML: {exc.report.message}") from None
    params = []
    for node in root.iterfind("parameters/parameter"):
        content = node.find("content")
        default = content.get("default") if content is not None else None
        params.append(OcfParameter(
            node.get("name", ""),
            required=node.get("required") in ("1", "true"),
            unique=node.get("unique") in ("1", "true"),
            default=default,
        ))
    actions = tuple(a.get("name", "") for a in root.iterfind("actions/action"))
    return OcfMetaData(tuple(params), actions, text)


def ocf_result(action: str, rc: int, said: str) -> Result:
    """An OCF agent's exit code as a Result. rgmanager has no promotable resources, so a monitor that says
    8 (running as promoted) counts as running and 9 (failed as promoted) as failed; any other code outside
    0-9 (or a death by signal) is OCF 1 with the raw code in the message."""
    text = said or f"{action} exited {rc}"
    if action == "monitor" and rc == OCF.RUNNING_PROMOTED:
        return Result(OCF.SUCCESS, one_line(f"running (as promoted, OCF 8): {text}"))
    if action == "monitor" and rc == OCF.FAILED_PROMOTED:
        return Result(OCF.ERR_GENERIC, one_line(f"failed (as promoted, OCF 9): {text}"))
    if 0 <= rc <= 9:
        return Result(rc, one_line(text))
    how = f"was killed by signal {-rc}" if rc < 0 else f"exited {rc}, which is not an OCF exit code"
    return Result(OCF.ERR_GENERIC, one_line(f"{action} {how}" + (f": {said}" if said else "")))


@register
class OcfAgent(Agent):
    type_name = "ocf"
    description = "Any installed OCF resource agent, run as $OCF_ROOT/resource.d/PROVIDER/TYPE with OCF_RESKEY_*."

    def __init__(self, attrs, *, ocf_root: str | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(attrs, **kwargs)
        self.ocf_root = ocf_root or os.environ.get("OCF_ROOT") or DEFAULT_OCF_ROOT

    # -- locating and describing the agent -----------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.param("provider") or "heartbeat"

    @property
    def agent_type(self) -> str:
        return self.attrs.get("type", "")

    @property
    def label(self) -> str:
        return f"ocf:{self.provider}:{self.agent_type}"

    def program(self) -> str:
        for what, value in (("provider", self.provider), ("type", self.agent_type)):
            if not _NAME.fullmatch(value) or value in (".", ".."):
                raise AgentError(OCF.ERR_CONFIGURED, f"ocf: {what}={value!r} is not a valid OCF agent name")
        path = os.path.join(self.ocf_root, "resource.d", self.provider, self.agent_type)
        if not os.path.isfile(path):
            raise AgentError(
                OCF.ERR_INSTALLED, f"{self.label}: OCF agent is not installed (no {path})"
            )
        if not os.access(path, os.X_OK):
            raise AgentError(OCF.ERR_PERM, f"{self.label}: {path} is not executable")
        return path

    def environment(self, depth: int = 0) -> dict[str, str]:
        env = {
            "OCF_ROOT": self.ocf_root,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "0",
            "OCF_RESOURCE_INSTANCE": self.attrs.get("name", self.agent_type),
            "OCF_RESOURCE_TYPE": self.agent_type,
            "OCF_RESOURCE_PROVIDER": self.provider,
            "OCF_CHECK_LEVEL": str(depth),
        }
        for key, value in self.agent_params().items():
            env["OCF_RESKEY_" + key] = value
        return env

    def agent_params(self) -> dict[str, str]:
        """The attributes meant for the agent: all but the selectors and rgmanager's `__special` ones."""
        return {
            k: v for k, v in self.attrs.items()
            if k not in SELECTOR_ATTRS and not k.startswith("__") and k.isidentifier() and k.isascii()
        }

    def agent_meta_data(self) -> OcfMetaData:
        path = self.program()
        key = (path, os.stat(path).st_mtime)
        cached = _META_CACHE.get(key)
        if cached is not None:
            return cached
        result = run_process([path, "meta-data"], timeout=min(DEFAULT_TIMEOUTS["meta-data"], self.remaining()),
                             env=self.environment())
        if result.timed_out:
            raise AgentError(OCF.ERR_GENERIC, f"{self.label}: meta-data timed out; its process group was killed",
                             timed_out=True)
        if result.rc != 0 or not result.stdout.strip():
            raise AgentError(OCF.ERR_GENERIC, f"{self.label}: meta-data failed (exit {result.rc}) {result.last_line()}")
        meta = parse_meta_data(result.stdout, self.label)
        _META_CACHE[key] = meta
        return meta

    def meta_data(self) -> str:  # type: ignore[override]
        """The installed agent's own meta-data XML."""
        return self.agent_meta_data().text

    def check(self) -> None:
        meta = self.agent_meta_data()
        given = self.agent_params()
        for p in meta.parameters:
            if p.required and given.get(p.name, "") == "" and p.default in (None, ""):
                raise AgentError(OCF.ERR_CONFIGURED,
                                 f"{self.label}: required parameter '{p.name}' is missing (from the agent's meta-data)")
        known = {p.name for p in meta.parameters}
        unknown = sorted(set(given) - known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "none"
            raise AgentError(OCF.ERR_CONFIGURED,
                             f"{self.label}: unknown parameter '{unknown[0]}' (the agent accepts: {accepted})")

    def has_action(self, op: str) -> bool:
        if op in ("start", "stop", "status", "monitor", "validate-all", "meta-data"):
            return True
        try:
            return op in self.agent_meta_data().actions
        except AgentError:
            return False

    # -- operations ----------------------------------------------------------------------------------------
    def _call(self, action: str, depth: int = 0) -> Result:
        result = self.execute([self.program(), action], env=self.environment(depth), what=f"{self.label} {action}")
        return ocf_result(action, result.rc, result.last_line())

    def _start(self) -> Result:
        return self._call("start")

    def _stop(self) -> Result:
        return self._call("stop")

    def _status(self, depth: int) -> Result:
        return self._call("monitor", depth)

    def _recover(self) -> Result:
        return self._call("recover")

    def _reload(self) -> Result:
        return self._call("reload")
