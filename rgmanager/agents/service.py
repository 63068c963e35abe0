"""The top-level `service` node: it groups resources and holds policy, so start and stop act on nothing.

The original service.sh also managed NFS lock recovery for `nfslock="1"`; that belongs to the nfs agents here.
"""
from __future__ import annotations

from rgmanager.agents.base import OCF, Agent, Result, register


@register
class ServiceAgent(Agent):
    type_name = "service"
    description = "The service container. Start, stop, status and recover succeed without touching the system."

    def has_action(self, op: str) -> bool:
        return op == "recover" or super().has_action(op)

    def _start(self) -> Result:
        return Result(OCF.SUCCESS, f"service {self.primary_value} container started")

    def _stop(self) -> Result:
        return Result(OCF.SUCCESS, f"service {self.primary_value} container stopped")

    def _status(self, depth: int) -> Result:
        return Result(OCF.SUCCESS, "service container is always running")

    def _recover(self) -> Result:
        return Result(OCF.SUCCESS, "nothing to recover in the service container")
