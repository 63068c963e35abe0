"""The audited changes to API tokens: making one and revoking one. The API (/api/v1/tokens/), the console's API
Tokens page and `manage.py apitoken` all go through these, so each change is audited once and alike
(token.create, token.revoke; the token's prefix is the target, never its text)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from luci_web.api import tokens
from luci_web.api.models import ApiToken
from luci_web.audit.log import record

MAX_DAYS = 3650


def expiry_in(days: int | None) -> datetime | None:
    """The moment a token made now expires after `days` days (None: never)."""
    return None if days is None else timezone.now() + timedelta(days=days)


def make(owner: Any, name: str, expires_at: datetime | None, *, by: Any, via: str) -> tuple[ApiToken, str]:
    """A new token for `owner`, audited as made by `by` (None: the shell) through `via`: (row, token text)."""
    with transaction.atomic():
        row, text = tokens.issue(owner, name, expires_at)
        record(by, "token.create", target=row.prefix, message=via,
               detail={"owner": owner.get_username(), "name": row.name,
                       "expires_at": expires_at.isoformat() if expires_at else None})
    return row, text


def revoke(row: ApiToken, *, by: Any, via: str) -> bool:
    """Revoke `row`, audited; False (and nothing audited) when it was revoked already."""
    with transaction.atomic():
        if not tokens.revoke(row):
            return False
        record(by, "token.revoke", target=row.prefix, message=via,
               detail={"owner": row.user.get_username(), "name": row.name})
    return True
