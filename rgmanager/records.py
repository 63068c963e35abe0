"""Service records as JSON: how the coordinator replicates its service table to every rgmanager, and how status
answers show it. One way to turn a `ServiceRecord` into plain data and back."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rgmanager.snapshot import ServiceRecord, ServiceTable
from rgmanager.states import Flag, State


def flags_text(flags: Flag) -> str:
    words = [word for flag, word in ((Flag.FROZEN, "frozen"), (Flag.PARTIAL, "partial")) if flag in flags]
    return ",".join(words)


def record_to_dict(record: ServiceRecord) -> dict[str, Any]:
    return {
        "name": record.name, "state": int(record.state), "state_str": record.state.label,
        "flags": int(record.flags), "flags_str": flags_text(record.flags),
        "owner": record.owner, "last_owner": record.last_owner, "restarts": len(record.restarts),
        "restart_times": list(record.restarts), "last_transition": record.last_transition,
        "inline_restarts": [[k, list(v)] for k, v in record.inline_restarts],
        "failures": [[k, list(v)] for k, v in record.failures],
    }


def _times(value: object) -> tuple[float, ...]:
    return tuple(float(t) for t in value) if isinstance(value, list) else ()


def _history(value: object) -> tuple[tuple[str, tuple[float, ...]], ...]:
    if not isinstance(value, list):
        return ()
    return tuple((str(k), _times(v)) for k, v in value if isinstance(v, list))


def record_from_dict(data: Mapping[str, Any]) -> ServiceRecord:
    return ServiceRecord(
        name=str(data["name"]),
        state=State(int(data.get("state", State.STOPPED))),
        owner=data.get("owner") or None,
        last_owner=data.get("last_owner") or None,
        restarts=_times(data.get("restart_times")),
        last_transition=float(data.get("last_transition", 0.0)),
        flags=Flag(int(data.get("flags", 0))),
        inline_restarts=_history(data.get("inline_restarts")),
        failures=_history(data.get("failures")),
    )


def table_to_list(table: ServiceTable) -> list[dict[str, Any]]:
    return [record_to_dict(table[name]) for name in sorted(table)]


def table_from_list(items: object) -> ServiceTable:
    if not isinstance(items, list):
        return ServiceTable()
    records = []
    for item in items:
        try:
            records.append(record_from_dict(item))
        except (KeyError, TypeError, ValueError):
            continue
    return ServiceTable(records)
