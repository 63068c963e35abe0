"""record(): the one way to write the audit log, masking secrets (fence passwords and the like) on the way in."""
from __future__ import annotations

import re
from typing import Any

from cluster_conf.schema import is_secret

MASK = "********"
# an attribute such as passwd="..." inside a message or an XML snippet
_SECRET_ATTR = re.compile(r"""\b([A-Za-z_][\w.-]*)\s*=\s*("[^"]*"|'[^']*'|\S+)""")


def mask(value: Any) -> Any:
    """A copy of `value` with every secret-named key's value replaced by MASK (dicts, lists, key=value text)."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret(k) and v not in (None, "") else mask(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not is_secret(name):
            return match.group(0)
        quote = match.group(2)[0] if match.group(2)[0] in "\"'" else ""
        return f"{name}={quote}{MASK}{quote}"

    return _SECRET_ATTR.sub(one, text)


def record(user: Any, action: str, *, cluster: Any = None, target: str = "", detail: dict[str, Any] | None = None,
           result: str = "ok", message: str = "") -> Any:
    """Write one audit entry. `cluster`: a Cluster or a name. Returns the entry."""
    from luci_web.audit.models import AuditEntry

    authenticated = user is not None and getattr(user, "is_authenticated", False)
    name = cluster if isinstance(cluster, str) else (getattr(cluster, "name", "") or "")
    return AuditEntry.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        cluster_name=name, action=action, target=str(target)[:255], detail=mask(detail or {}), result=result,
        message=mask_text(str(message))[:4000],
    )
