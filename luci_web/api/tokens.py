"""Making, checking and revoking API tokens (the console's API Tokens page, `manage.py apitoken` and the API's
own /api/v1/tokens/ share these).

A token reads `luci_<prefix>_<secret>`: the prefix (8 characters) finds the row, the secret (32 random bytes)
proves it. Only SHA-256 of the whole token is stored: a token has 256 bits of entropy, so a slow password hash
would add nothing but time to every request. The stored and computed digests are compared with
hmac.compare_digest (constant time). last_used_at is written at most once a minute per token, so a busy script
does not turn every read into a database write.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from luci_web.api.models import ApiToken

PREFIX_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o/1/l: a prefix read aloud or off a log stays unambiguous
PREFIX_LENGTH = 8
TOUCH_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue(user: Any, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: (its row, the token text, to be shown once and never again)."""
    for _ in range(5):
        prefix = "".join(secrets.choice(PREFIX_CHARS) for _ in range(PREFIX_LENGTH))
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    token = f"luci_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken.objects.create(user=user, name=name[:100], prefix=prefix, digest=_digest(token),
                                  expires_at=expires_at)
    return row, token


def check(token: str) -> ApiToken | None:
    """The active token row `token` is, or None (unknown, wrong secret, revoked, expired, inactive user)."""
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "luci" or len(parts[1]) != PREFIX_LENGTH:
        return None
    row = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if row is None:
        _digest(token)  # the same work as a known prefix, so timing does not tell prefixes apart
        return None
    if not hmac.compare_digest(row.digest, _digest(token)):
        return None
    if not row.active or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def revoke(row: ApiToken) -> bool:
    """Revoke `row` (kept, for the audit trail); False when it was revoked already."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = timezone.now()
    row.save(update_fields=["revoked_at"])
    return True
