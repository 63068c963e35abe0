"""The `netfs` agent: an NFS or CIFS export mounted like `fs` (`HOST:EXPORT` or `//HOST/EXPORT`).

The kernel needs the mount helper (`mount.nfs`, `mount.cifs`); without it start fails naming the helper.
no_unmount="1" leaves the file system mounted on stop; force_unmount works as for fs.
"""
from __future__ import annotations

from rgmanager.agents.base import OCF, AgentError, Result, register, require_program
from rgmanager.agents.fs import FsAgent

MOUNT_HELPERS = {"nfs": "mount.nfs", "nfs4": "mount.nfs4", "cifs": "mount.cifs"}


@register
class NetFsAgent(FsAgent):
    type_name = "netfs"
    description = "A network file system (nfs, nfs4 or cifs) mounted from HOST:EXPORT."
    programs = ("mount", "umount", "mount.nfs", "mount.cifs")

    def fstype(self) -> str | None:
        return self.param("fstype") or "nfs"

    def device(self) -> str:
        host, export = self.param("host") or "", self.param("export") or ""
        if self.fstype() == "cifs":
            return f"//{host}/{export.lstrip('/')}"
        return f"{host}:{export}"

    def check(self) -> None:
        for name in ("host", "export"):
            value = self.param(name) or ""
            if not value:
                raise AgentError(OCF.ERR_CONFIGURED, f"netfs: required parameter '{name}' is missing")
            if value.startswith("-"):
                raise AgentError(OCF.ERR_CONFIGURED, f"netfs: {name}={value!r} may not start with '-'")
        super().check()

    def check_device(self) -> None:
        """HOST:EXPORT is not a local path; host and export were checked above (neither starts with "-")."""

    def _prepare(self) -> None:
        helper = MOUNT_HELPERS.get(self.fstype() or "nfs")
        if helper:
            require_program(helper)

    def _stop(self) -> Result:
        if self.flag("no_unmount"):
            return Result(OCF.SUCCESS, f"{self.mountpoint()} left mounted (no_unmount)")
        return super()._stop()
