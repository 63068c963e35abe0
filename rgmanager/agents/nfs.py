"""The NFS agents, driving the kernel NFS server through `exportfs`.

- `nfsexport` marks a path (inherited from the parent fs's mountpoint) as exported: start checks that the path is
  a directory and that the NFS tools are installed; its nfsclient children do the exporting. stop and status
  have nothing of their own to change or check beyond the path.
- `nfsclient` exports the path to one target: `exportfs -i -o OPTIONS TARGET:PATH` (fsid=N is added to the
  options when the resource has an fsid), unexports with `exportfs -u TARGET:PATH`, and checks `exportfs -v`.
  Targets are compared after normalising: `*` and exportfs's `<world>` are the same, host names compare
  case-insensitively, networks by value (10.0.0.0/255.255.255.0 = 10.0.0.0/24). Host names are not resolved:
  when exportfs shows a different spelling (a canonical FQDN for a short name), write the target as exportfs
  shows it, or use an address. Its `recover` action re-exports.
- `nfsserver` runs the kernel NFS server: start runs `rpc.mountd` and `rpc.nfsd 8` unless nfsd threads already
  run (then it changes nothing); stop runs `rpc.nfsd 0` only. Exports are left alone: each nfsclient exports
  and unexports its own, and exports made by anyone else (/etc/exports, other services) are not ours to
  remove. Unlike the original nfsserver.sh, NFS state (/var/lib/nfs) is not moved onto `path`/`nfspath`, so
  clients reclaim locks after a failover only if the state is shared some other way; start says so.
  status reads the thread count in /proc/fs/nfsd/threads.
"""
from __future__ import annotations

import ipaddress
import os
import re

from rgmanager.agents.base import OCF, Agent, AgentError, Result, register, require_program

NFSD_THREADS = "/proc/fs/nfsd/threads"


def export_options(options: str | None, fsid: str | None) -> str:
    """The -o value: the resource's options plus fsid=N when the resource has one and options lack it."""
    parts = [p for p in (options or "").split(",") if p]
    if fsid and not any(p.startswith("fsid=") for p in parts):
        parts.append(f"fsid={fsid}")
    return ",".join(parts)


def check_target(target: str) -> None:
    if not target or target.startswith("-") or re.search(r"[\s(),]", target):
        raise AgentError(OCF.ERR_CONFIGURED, f"nfsclient: target {target!r} is not a host, network or @netgroup")


def check_path(path: str, who: str) -> None:
    if not os.path.isabs(path):
        raise AgentError(OCF.ERR_CONFIGURED, f"{who}: path {path!r} must be an absolute path")


def export_argv(target: str, path: str, options: str | None = None, fsid: str | None = None) -> list[str]:
    """`exportfs -i [-o OPTS] TARGET:PATH`: one argv element per argument, values never re-split."""
    check_target(target)
    check_path(path, "nfsclient")
    opts = export_options(options, fsid)
    return ["exportfs", "-i", *(["-o", opts] if opts else []), f"{target}:{path}"]


def unexport_argv(target: str, path: str) -> list[str]:
    check_target(target)
    check_path(path, "nfsclient")
    return ["exportfs", "-u", f"{target}:{path}"]


def _unescape_octal(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_exports(text: str) -> list[tuple[str, str, str]]:
    """(path, target, options) triples from `exportfs -v` output (continuation lines carry the clients)."""
    found: list[tuple[str, str, str]] = []
    path = None
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if not line[0].isspace():
            path = _unescape_octal(fields[0])
            fields = fields[1:]
        for field in fields:
            match = re.fullmatch(r"([^()]*)\((.*)\)", field)
            if path is not None and match:
                found.append((path, match.group(1) or "*", match.group(2)))
    return found


def normal_target(target: str) -> str:
    """A client spec in one spelling: `<world>` and empty as `*`, networks by value, names in lower case."""
    if target in ("", "*", "<world>"):
        return "*"
    if "/" in target:
        with_mask = target.split("/", 1)
        try:
            return str(ipaddress.ip_network(f"{with_mask[0]}/{with_mask[1]}", strict=False))
        except ValueError:
            pass
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        return target.lower()


def is_exported(entries: list[tuple[str, str, str]], path: str, target: str) -> bool:
    """Whether `exportfs -v` entries (parse_exports) export `path` to `target`."""
    wanted = normal_target(target)
    return any(p == path and normal_target(t) == wanted for p, t, _o in entries)


@register
class NfsExportAgent(Agent):
    type_name = "nfsexport"
    description = "An NFS export point; its nfsclient children export the path to their targets."
    programs = ("exportfs",)

    def path(self) -> str:
        return self.param("path") or ""

    def check(self) -> None:
        check_path(self.path(), "nfsexport")

    def _start(self) -> Result:
        require_program("exportfs")
        if not os.path.isdir(self.path()):
            raise AgentError(OCF.ERR_GENERIC, f"nfsexport: {self.path()} is not a directory")
        return Result(OCF.SUCCESS, f"{self.path()} ready for export")

    def _stop(self) -> Result:
        return Result(OCF.SUCCESS, f"{self.path()} export point released")

    def _status(self, depth: int) -> Result:
        if not os.path.isdir(self.path()):
            return Result(OCF.ERR_GENERIC, f"nfsexport: {self.path()} is not a directory")
        return Result(OCF.SUCCESS, f"{self.path()} is present")


@register
class NfsClientAgent(Agent):
    type_name = "nfsclient"
    description = "One NFS client (host, network or @netgroup) given access to the parent export's path."
    programs = ("exportfs",)

    def has_action(self, op: str) -> bool:
        return op == "recover" or super().has_action(op)

    def target(self) -> str:
        return self.param("target") or ""

    def path(self) -> str:
        return self.param("path") or ""

    def check(self) -> None:
        check_target(self.target())
        check_path(self.path(), "nfsclient")

    def exported(self) -> bool:
        result = self.execute(["exportfs", "-v"], check=True, what="exportfs -v")
        return is_exported(parse_exports(result.stdout), self.path(), self.target())

    def _start(self) -> Result:
        argv = export_argv(self.target(), self.path(), self.param("options"), self.param("fsid"))
        self.execute(argv, check=True, what=f"exportfs {self.target()}:{self.path()}")
        return Result(OCF.SUCCESS, f"{self.path()} exported to {self.target()}")

    def _stop(self) -> Result:
        self.check()
        if not self.exported():
            return Result(OCF.SUCCESS, f"{self.path()} is not exported to {self.target()}")
        self.execute(unexport_argv(self.target(), self.path()), check=True,
                     what=f"exportfs -u {self.target()}:{self.path()}")
        return Result(OCF.SUCCESS, f"{self.path()} no longer exported to {self.target()}")

    def _status(self, depth: int) -> Result:
        self.check()
        if self.exported():
            return Result(OCF.SUCCESS, f"{self.path()} is exported to {self.target()}")
        return Result(OCF.NOT_RUNNING, f"{self.path()} is not exported to {self.target()}")

    def _recover(self) -> Result:
        return self._start()


@register
class NfsServerAgent(Agent):
    type_name = "nfsserver"
    description = "The kernel NFS server (rpc.mountd and nfsd threads)."
    programs = ("rpc.nfsd", "rpc.mountd", "exportfs")

    def has_action(self, op: str) -> bool:
        return op == "recover" or super().has_action(op)

    @staticmethod
    def threads() -> int:
        try:
            with open(NFSD_THREADS) as fh:
                return int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def state_note(self) -> str:
        """What the original did with path/nfspath and we do not, said instead of silently ignored."""
        if not (self.param("path") or self.param("nfspath")):
            return ""
        where = os.path.join(self.param("path") or "PATH", self.param("nfspath") or ".clumanager/nfs")
        return f"; NFS state is not moved to {where} (not implemented): clients may not reclaim locks after failover"

    def _start(self) -> Result:
        for program in self.programs:
            require_program(program)
        count = self.threads()
        if count > 0:
            return Result(OCF.SUCCESS, f"NFS server is already running ({count} nfsd threads){self.state_note()}")
        self.execute(["rpc.mountd"], check=True, what="rpc.mountd")
        self.execute(["rpc.nfsd", "8"], check=True, what="rpc.nfsd 8")
        return Result(OCF.SUCCESS, f"NFS server started{self.state_note()}")

    def _stop(self) -> Result:
        if self.threads() == 0:
            return Result(OCF.SUCCESS, "NFS server is not running")
        # No `exportfs -ua`: it would remove every export on the host, not only this service's.
        self.execute(["rpc.nfsd", "0"], check=True, what="rpc.nfsd 0")
        return Result(OCF.SUCCESS, "NFS server stopped (nfsd threads 0; exports left to their owners)")

    def _status(self, depth: int) -> Result:
        count = self.threads()
        if count > 0:
            return Result(OCF.SUCCESS, f"NFS server running with {count} nfsd threads")
        return Result(OCF.NOT_RUNNING, "NFS server is not running (no nfsd threads)")

    def _recover(self) -> Result:
        self._stop()
        return self._start()
