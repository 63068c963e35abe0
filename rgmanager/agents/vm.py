"""The `vm` agent: a libvirt domain driven by `virsh` (the top-level <vm> node of a service tree).

start: `virsh [-c URI] start NAME` (or `virsh create --file XMLFILE` when xmlfile is set; XMLFILE must be an
absolute path, so it can never be read as an option); stop: `virsh shutdown NAME`, wait
until the domain is off, then `virsh destroy NAME` when the stop timeout is nearly spent; status:
`virsh domstate NAME` ("running", "idle", "paused", "in shutdown" count as running; "shut off" is stopped);
migrate: `virsh migrate [--live] NAME URI`.
"""
from __future__ import annotations

import time

from rgmanager.agents.base import OCF, Agent, AgentError, Result, register, unexpected

# Domain names are checked not to start with "-", so virsh never reads one as an option.
RUNNING_STATES = {"running", "idle", "paused", "in shutdown", "blocked", "pmsuspended"}
STOPPED_STATES = {"shut off", "shutoff", "crashed"}


@register
class VmAgent(Agent):
    type_name = "vm"
    description = "A virtual machine managed with virsh (libvirt)."
    programs = ("virsh",)

    def has_action(self, op: str) -> bool:
        return op in ("migrate", "recover") or super().has_action(op)

    def virsh(self) -> list[str]:
        uri = self.param("hypervisor_uri")
        return ["virsh", "-c", uri] if uri else ["virsh"]

    def domain(self) -> str:
        name = self.param("name") or ""
        if not name or name.startswith("-"):
            raise AgentError(OCF.ERR_CONFIGURED, f"vm: name {name!r} is not a usable domain name")
        return name

    def xmlfile(self) -> str | None:
        path = self.param("xmlfile")
        if path and not path.startswith("/"):
            raise AgentError(OCF.ERR_CONFIGURED, f"vm: xmlfile {path!r} must be an absolute path")
        return path

    def check(self) -> None:
        self.domain()
        self.xmlfile()

    def state(self) -> str:
        result = self.execute([*self.virsh(), "domstate", self.domain()], what="virsh domstate")
        if result.rc != 0:
            said = result.last_line()
            if "failed to get domain" in said.lower() or "domain not found" in said.lower():
                return "shut off"
            raise AgentError(OCF.ERR_GENERIC, f"virsh domstate {self.domain()} failed: {said}")
        return result.stdout.strip().splitlines()[0].strip() if result.stdout.strip() else "unknown"

    def _start(self) -> Result:
        if self.state() in RUNNING_STATES:
            return Result(OCF.SUCCESS, f"vm {self.domain()} is already running")
        xmlfile = self.xmlfile()
        argv = [*self.virsh(), "create", "--file", xmlfile] if xmlfile else [*self.virsh(), "start", self.domain()]
        self.execute(argv, check=True, what=f"virsh start {self.domain()}")
        return Result(OCF.SUCCESS, f"vm {self.domain()} started")

    def _stop(self) -> Result:
        if self.state() in STOPPED_STATES:
            return Result(OCF.SUCCESS, f"vm {self.domain()} is not running")
        self.execute([*self.virsh(), "shutdown", self.domain()], what=f"virsh shutdown {self.domain()}")
        grace = max(0.0, self.remaining() - 10.0)
        if self.wait_until(lambda: self.state() in STOPPED_STATES, limit=grace, step=1.0):
            return Result(OCF.SUCCESS, f"vm {self.domain()} shut down")
        self.execute([*self.virsh(), "destroy", self.domain()], check=True, what=f"virsh destroy {self.domain()}")
        return Result(OCF.SUCCESS, f"vm {self.domain()} did not shut down in time and was destroyed")

    def _status(self, depth: int) -> Result:
        state = self.state()
        if state in RUNNING_STATES:
            return Result(OCF.SUCCESS, f"vm {self.domain()} is {state}")
        if state in STOPPED_STATES:
            return Result(OCF.NOT_RUNNING, f"vm {self.domain()} is {state}")
        return Result(OCF.ERR_GENERIC, f"vm {self.domain()} is in state {state!r}")

    def _recover(self) -> Result:
        self._stop()
        return self._start()

    def migrate(self, target_uri: str) -> Result:
        """Live (or paused) migration to another host's libvirt URI."""
        self._deadline = time.monotonic() + self.timeout("migrate")
        try:
            if target_uri.startswith("-"):
                raise AgentError(OCF.ERR_ARGS, f"vm: migration target {target_uri!r} may not start with '-'")
            mode = ["--live"] if (self.param("migrate") or "live") == "live" else []
            self.execute([*self.virsh(), "migrate", *mode, self.domain(), target_uri], check=True,
                         what=f"virsh migrate {self.domain()}")
            return Result(OCF.SUCCESS, f"vm {self.domain()} migrated to {target_uri}")
        except AgentError as exc:
            return Result(exc.rc, exc.message, timed_out=exc.timed_out)
        except Exception as exc:  # one line, never a traceback
            return unexpected(f"vm migrate {self.domain()}", exc)
        finally:
            self._deadline = None
