"""The `lvm` agent: activate a volume group, or one logical volume of it, with the `lvm` command.

start: `lvm vgchange -a y -- VG` (or `lvm lvchange -a y -- VG/LV`); stop: the same with `-a n`; status:
`lvm lvs` reports the volume(s) active (fifth lv_attr letter "a"). HA-LVM tagging of the original is not done:
use clvmd or system IDs to keep other nodes from activating the group.
"""
from __future__ import annotations

import re

from rgmanager.agents.base import OCF, Agent, AgentError, Result, register

_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*")


@register
class LvmAgent(Agent):
    type_name = "lvm"
    description = "An LVM volume group or logical volume, activated on start and deactivated on stop."
    programs = ("lvm",)

    def target(self) -> str:
        vg, lv = self.param("vg_name") or "", self.param("lv_name")
        return f"{vg}/{lv}" if lv else vg

    def check(self) -> None:
        for name in ("vg_name", "lv_name"):
            value = self.param(name)
            if value is not None and not _LVM_NAME.fullmatch(value):
                raise AgentError(OCF.ERR_CONFIGURED, f"lvm: {name}={value!r} is not a valid LVM name")

    def _change(self, active: str) -> None:
        self.check()
        command = "lvchange" if self.param("lv_name") else "vgchange"
        self.execute(["lvm", command, "-a", active, "--", self.target()], check=True,
                     what=f"lvm {command} -a {active} {self.target()}")

    def _start(self) -> Result:
        self._change("y")
        return Result(OCF.SUCCESS, f"{self.target()} activated")

    def _stop(self) -> Result:
        self._change("n")
        return Result(OCF.SUCCESS, f"{self.target()} deactivated")

    def _status(self, depth: int) -> Result:
        self.check()
        result = self.execute(["lvm", "lvs", "--noheadings", "-o", "lv_name,lv_attr", "--", self.target()],
                              check=True, what=f"lvm lvs {self.target()}")
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
        inactive = [row[0] for row in rows if len(row) >= 2 and (len(row[1]) < 5 or row[1][4] != "a")]
        if not rows:
            return Result(OCF.NOT_RUNNING, f"{self.target()} has no logical volumes")
        if inactive:
            return Result(OCF.NOT_RUNNING, f"{self.target()}: not active: {', '.join(inactive)}")
        return Result(OCF.SUCCESS, f"{self.target()} is active")
