"""Fence devices (<fencedevices>): the pure edit functions the console's Fence Devices tab and the API share,
the one way to show a device without its secrets, and the check of parameters against the agent's metadata.

Secrets (cluster_conf.schema.is_secret: passwd, password, community, ...) are write-only everywhere: a device is
shown with the names of the secrets it holds, never their values; an edit that does not name a secret keeps it."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from cluster_conf import ClusterConf, edit
from cluster_conf.model import FenceDevice
from cluster_conf.schema import is_secret
from luci_web.clusters.fence_metadata import AgentForm

Params = Mapping[str, str | None]
TRUTH_VALUES = ("1", "0", "yes", "no", "on", "off", "true", "false")
WHOLE = re.compile(r"[0-9]{1,12}")
SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


def public_attrs(attrs: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the attributes that are not secret, the names of the secret ones that hold a value)."""
    shown = {k: v for k, v in attrs.items() if not is_secret(k)}
    return shown, [k for k in attrs if is_secret(k)]


def device_dict(device: FenceDevice) -> dict[str, Any]:
    params, secrets = public_attrs(device.params)
    return {"name": device.name, "agent": device.agent, "params": params, "secrets_set": secrets}


def metadata_problems(agent: AgentForm, params: Params) -> dict[str, str]:
    """parameter -> what is wrong with its value, for parameters the agent's metadata describes (select choices,
    booleans, integers). Messages never hold the value (it may be a secret). Parameters the metadata does not
    describe are kept as given (RHCS-era names, other agents' versions), as the console's key=value lines are."""
    problems: dict[str, str] = {}
    if agent.generic:
        return problems
    for name, value in params.items():
        param = agent.param(name)
        if param is None or value is None or param.secret:
            continue
        if param.type == "select" and param.choices and value not in param.choices:
            problems[name] = f"must be one of: {', '.join(param.choices)}"
        elif param.type == "boolean" and value.lower() not in TRUTH_VALUES:
            problems[name] = "must be 1 or 0 (yes/no, on/off, true/false)"
        elif param.type == "integer" and not WHOLE.fullmatch(value):
            problems[name] = "must be a whole number"
        elif param.type == "second" and not SECONDS.fullmatch(value):
            problems[name] = "must be a number of seconds"
    return problems


# -- edit functions ------------------------------------------------------------------------------------------
def add_device(name: str, agent: str, params: Params) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.add_fence_device(conf, name, agent, {k: v for k, v in params.items() if v is not None})
    return apply


def update_device(name: str, params: Params, dropped: list[str]) -> Callable[[ClusterConf], None]:
    """Set the parameters; `dropped`: extra parameters the user deleted from the key=value lines."""
    def apply(conf: ClusterConf) -> None:
        edit.set_fence_device_attrs(conf, name, {**{d: None for d in dropped}, **params})
    return apply


def replace_device(name: str, agent: str | None, params: Params) -> Callable[[ClusterConf], None]:
    """The device's parameters become `params` (and its agent `agent`, when given): every other parameter is
    removed, except secrets, which are kept unless named (a value sets one, None removes it)."""
    def apply(conf: ClusterConf) -> None:
        element = edit.find_fence_device(conf, name)
        present = [] if element is None else [k for k in element.attrib if k not in ("name", "agent")]
        dropped = [k for k in present if k not in params and not is_secret(k)]
        update_device(name, {**({"agent": agent} if agent else {}), **params}, dropped)(conf)
    return apply


def delete_device(name: str) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.remove_fence_device(conf, name)
    return apply

