"""Resource agents: built-in agents that act on the real system for one resource each (see docs/agents.md).

`agent_for(type_name)` returns the agent class; `agent_for("script")({"name": "httpd", "file": "..."}).start()`
returns a `Result` (OCF code and one-line message).
"""
from rgmanager.agents.base import (
    OCF,
    Agent,
    AgentError,
    ProcessResult,
    Result,
    UnknownAgentType,
    agent_for,
    known_agents,
    run_process,
)

__all__ = [
    "OCF",
    "Agent",
    "AgentError",
    "ProcessResult",
    "Result",
    "UnknownAgentType",
    "agent_for",
    "known_agents",
    "run_process",
]
