"""API tokens from the shell (scripted setups, a lost console session):

    manage.py apitoken create USER --name NAME [--expires DAYS]   prints the token, once
    manage.py apitoken list USER                                  prefix, name, state, dates (never a token)
    manage.py apitoken revoke PREFIX                              the prefix shown by list (or the whole token)

Making and revoking are audited with the user name "" (the shell) and the message "manage.py apitoken".
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from luci_web.api import token_changes, tokens
from luci_web.api.models import ApiToken

VIA = "manage.py apitoken"


def days(text: str) -> int:
    """--expires: a whole number of days, 1 to MAX_DAYS."""
    if not text.isdigit() or not 1 <= int(text) <= token_changes.MAX_DAYS:
        raise CommandError(f"--expires must be a number of days from 1 to {token_changes.MAX_DAYS}, not {text!r}")
    return int(text)


def state(row: ApiToken) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "active" if row.active else "expired"


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


class Command(BaseCommand):
    help = "Make, list and revoke a luci user's API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="make a token for USER and print it (once)")
        create.add_argument("user")
        create.add_argument("--name", required=True, help="what the token is for")
        create.add_argument("--expires", metavar="DAYS", help="days until it stops working (default: never)")
        listing = sub.add_parser("list", help="USER's tokens")
        listing.add_argument("user")
        revoke = sub.add_parser("revoke", help="revoke a token by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['verb']}")(options)

    def do_create(self, options: dict[str, Any]) -> None:
        user = self.user(options["user"])
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters")
        expires_at = token_changes.expiry_in(days(options["expires"])) if options["expires"] is not None else None
        row, text = token_changes.make(user, name, expires_at, by=None, via=VIA)
        self.stderr.write(f"token {row.prefix} for {user.get_username()} ({row.name}), expires {when(expires_at)}; "
                          "it is shown this once:")
        self.stdout.write(text)

    def do_list(self, options: dict[str, Any]) -> None:
        user = self.user(options["user"])
        for row in ApiToken.objects.filter(user=user):
            self.stdout.write(f"{row.prefix}  {state(row):8}  made {when(row.created_at)}  expires "
                              f"{when(row.expires_at)}  last used {when(row.last_used_at)}  {row.name}")

    def do_revoke(self, options: dict[str, Any]) -> None:
        prefix = options["prefix"]
        if prefix.startswith("luci_"):  # the whole token (or luci_<prefix>): its prefix part
            prefix = prefix.split("_")[1]
        if len(prefix) != tokens.PREFIX_LENGTH:
            raise CommandError(f"a token prefix is {tokens.PREFIX_LENGTH} characters (see `apitoken list USER`)")
        row = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
        if row is None:
            raise CommandError(f"no token with the prefix {prefix!r}")
        if not token_changes.revoke(row, by=None, via=VIA):
            raise CommandError(f"token {prefix} was revoked already")
        self.stdout.write(f"revoked {prefix} of {row.user.get_username()} ({row.name})")

    def user(self, name: str) -> Any:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise CommandError(f"no user {name!r}")
        return user
