"""How a request to the API proves who it is: `Authorization: Bearer luci_…` (an API token, luci_web.api.tokens)
or the console's session cookie, with Django's CSRF check enforced on every unsafe method (DRF's
SessionAuthentication). Without either, the API answers 401 with `WWW-Authenticate: Bearer realm="luci"`."""
from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from luci_web.api import tokens


class BearerToken(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header must be: Bearer <token>")
        try:
            text = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the token is not valid") from None
        row = tokens.check(text)
        if row is None:
            raise exceptions.AuthenticationFailed("the token is not valid (unknown, revoked or expired)")
        return row.user, row

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="luci"'
