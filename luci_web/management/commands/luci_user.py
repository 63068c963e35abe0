"""Create or change a luci user and grant rights from the shell (the first administrator, scripted setups).

    manage.py luci_user add NAME [--admin] [--create-clusters] [--import-clusters] [--password-stdin]
    manage.py luci_user modify NAME [--admin|--no-admin] [--create-clusters|--no-create-clusters] ...
                                    [--password-stdin]
    manage.py luci_user grant NAME CLUSTER view,config,service_cmd,node_cmd,membership,remove
    manage.py luci_user revoke NAME CLUSTER [RIGHTS]      (no RIGHTS: every right on CLUSTER)

Without --password-stdin, `add` asks for the password twice on the terminal. Every change is audited with the
user name "" (the shell) and the message "manage.py luci_user".
"""
from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from luci_web.access.models import ClusterGrant
from luci_web.access.rights import (
    CLUSTER_RIGHTS,
    global_rights,
    set_cluster_rights,
    set_global_rights,
)
from luci_web.audit.log import record
from luci_web.clusters.models import Cluster

GLOBAL_FLAGS = {"admin": "administrator", "create_clusters": "create_clusters", "import_clusters": "import_clusters"}
VIA = "manage.py luci_user"


def parse_rights(text: str) -> set[str]:
    rights = {r.strip() for r in text.split(",") if r.strip()}
    unknown = rights - set(CLUSTER_RIGHTS)
    if unknown:
        raise CommandError(f"unknown right(s) {', '.join(sorted(unknown))}; rights are {', '.join(CLUSTER_RIGHTS)}")
    if not rights:
        raise CommandError(f"no rights given; rights are {', '.join(CLUSTER_RIGHTS)}")
    return rights


class Command(BaseCommand):
    help = "Create or change a luci user and grant global and per-cluster rights."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        for verb in ("add", "modify"):
            p = sub.add_parser(verb, help=f"{verb} a user")
            p.add_argument("name")
            for flag in GLOBAL_FLAGS:
                dashed = flag.replace("_", "-")
                p.add_argument(f"--{dashed}", dest=flag, action="store_true", default=None)
                if verb == "modify":
                    p.add_argument(f"--no-{dashed}", dest=flag, action="store_false")
            p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        for verb in ("grant", "revoke"):
            p = sub.add_parser(verb, help=f"{verb} rights on one cluster")
            p.add_argument("name")
            p.add_argument("cluster")
            p.add_argument("rights", nargs="?" if verb == "revoke" else None, default="")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['verb']}")(options)

    # -- verbs -----------------------------------------------------------------------------------------------
    def do_add(self, options: dict[str, Any]) -> None:
        model = get_user_model()
        name = options["name"]
        if model.objects.filter(username=name).exists():
            raise CommandError(f"user {name!r} exists already (use `modify`)")
        password = self.read_password(options, model(username=name))
        wanted = {right for flag, right in GLOBAL_FLAGS.items() if options[flag]}
        with transaction.atomic():
            user = model.objects.create_user(username=name, password=password)
            set_global_rights(user, wanted)
            record(None, "user.add", target=name, detail={"global": sorted(wanted)}, message=VIA)
        self.stdout.write(f"added {name}: {', '.join(sorted(wanted)) or 'no global rights'}")

    def do_modify(self, options: dict[str, Any]) -> None:
        user = self.user(options["name"])
        wanted = set(global_rights(user))
        for flag, right in GLOBAL_FLAGS.items():
            if options[flag] is True:
                wanted.add(right)
            elif options[flag] is False:
                wanted.discard(right)
        with transaction.atomic():
            if options["password_stdin"]:
                user.set_password(self.read_password(options, user))
                user.save(update_fields=["password"])
                record(None, "user.password", target=user.get_username(), message=VIA)
            set_global_rights(user, wanted)
            record(None, "user.rights", target=user.get_username(), detail={"global": sorted(wanted)}, message=VIA)
        self.stdout.write(f"{user.get_username()}: {', '.join(sorted(wanted)) or 'no global rights'}")

    def do_grant(self, options: dict[str, Any]) -> None:
        self.change_grant(options, add=parse_rights(options["rights"]), remove=set())

    def do_revoke(self, options: dict[str, Any]) -> None:
        remove = parse_rights(options["rights"]) if options["rights"] else set(CLUSTER_RIGHTS)
        self.change_grant(options, add=set(), remove=remove)

    # -- helpers ---------------------------------------------------------------------------------------------
    def change_grant(self, options: dict[str, Any], add: set[str], remove: set[str]) -> None:
        user = self.user(options["name"])
        cluster = Cluster.objects.filter(name=options["cluster"]).first()
        if cluster is None:
            raise CommandError(f"no cluster {options['cluster']!r} in luci")
        grant = ClusterGrant.objects.filter(user=user, cluster=cluster).first()
        held = {r for r in CLUSTER_RIGHTS if grant is not None and getattr(grant, r)}
        wanted = (held | add) - remove
        if "view" in remove:  # view goes only with every other right
            wanted = set()
        with transaction.atomic():
            set_cluster_rights(user, cluster, wanted)
            record(None, "user.rights", cluster=cluster, target=user.get_username(),
                   detail={"clusters": {cluster.name: sorted(wanted)}}, message=VIA)
        self.stdout.write(f"{user.get_username()} on {cluster.name}: {', '.join(sorted(wanted)) or 'no rights'}")

    def user(self, name: str) -> Any:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise CommandError(f"no user {name!r}")
        return user

    def read_password(self, options: dict[str, Any], user: Any) -> str:
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the two passwords differ")
        if not password:
            raise CommandError("empty password")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        return password
