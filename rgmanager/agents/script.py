"""The `script` agent: an LSB init script run as `FILE start|stop|status`.

LSB codes for start and stop are the OCF codes. For status, LSB 0 means running and 3 stopped; we return the
OCF form (0 running, 7 not running) so every agent speaks one code space, and keep the script's own code in the
message. A start or stop exit code outside LSB's 0-7 (or a death by signal) is OCF 1 with the raw code in the
message. Resource attributes are passed as OCF_RESKEY_<name> variables, as rgmanager's script.sh did.
"""
from __future__ import annotations

import os

from rgmanager.agents.base import OCF, Agent, AgentError, Result, ocf_environment, one_line, register

LSB_STATUS = {
    0: (OCF.SUCCESS, "running"),
    1: (OCF.ERR_GENERIC, "dead but a pid file exists"),
    2: (OCF.ERR_GENERIC, "dead but a lock file exists"),
    3: (OCF.NOT_RUNNING, "stopped"),
    4: (OCF.ERR_GENERIC, "status unknown"),
}


def lsb_result(op: str, rc: int, said: str) -> Result:
    """An LSB start/stop exit code as a Result: 0-7 are the OCF codes; anything else is OCF 1 naming it."""
    if 0 <= rc <= 7:
        return Result(rc, one_line(said or f"{op} exited {rc}"))
    how = f"was killed by signal {-rc}" if rc < 0 else f"exited {rc}, which is not an LSB exit code"
    return Result(OCF.ERR_GENERIC, one_line(f"{op} {how}" + (f": {said}" if said else "")))


@register
class ScriptAgent(Agent):
    type_name = "script"
    description = "An LSB init script, run as 'FILE start', 'FILE stop' and 'FILE status'."

    def check(self) -> None:
        path = self.param("file") or ""
        if not os.path.isabs(path):
            raise AgentError(OCF.ERR_CONFIGURED, f"script: file {path!r} must be an absolute path")
        if not os.path.isfile(path):
            raise AgentError(OCF.ERR_INSTALLED, f"script: {path!r} does not exist")
        if not os.access(path, os.X_OK):
            raise AgentError(OCF.ERR_PERM, f"script: {path!r} is not executable")

    def _call(self, op: str) -> tuple[int, str]:
        self.check()
        result = self.execute([self.param("file") or "", op], env=ocf_environment(self.attrs), what=f"script {op}")
        return result.rc, result.last_line()

    def _start(self) -> Result:
        return lsb_result("start", *self._call("start"))

    def _stop(self) -> Result:
        if not os.path.isfile(self.param("file") or ""):
            # Nothing can be running from a script that does not exist; stopping it is a success (as LSB).
            return Result(OCF.SUCCESS, f"script {self.param('file')!r} does not exist; nothing to stop")
        return lsb_result("stop", *self._call("stop"))

    def _status(self, depth: int) -> Result:
        rc, said = self._call("status")
        code, meaning = LSB_STATUS.get(rc, (OCF.ERR_GENERIC, "failed"))
        return Result(code, one_line(f"status exited {rc} ({meaning})" + (f": {said}" if said else "")))
