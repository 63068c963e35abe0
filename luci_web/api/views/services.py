"""Services and VMs: their definitions (attributes and resource tree) with their state, created, replaced, changed
and deleted through the one way to change the configuration (202 + a push task), and the service commands
(enable, disable, relocate, migrate, restart, stop, freeze, unfreeze, convalesce) run synchronously through
luci_web.clusters.service_commands with rgmanager's result code and string in the answer.

A service is named in the URL as clusvcadm names it: `web` (= `service:web`), `service:web` or `vm:guest`.

Secret attributes (a vm's migrate_passwd, a resource's password: cluster_conf.schema.is_secret) are write-only, as
fence devices' are: answers name the ones set in `secrets_set`, never a value; a PUT that does not name a secret
keeps it (GET then PUT never loses one), a value replaces it, null removes it.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf import edit
from luci_web.api.base import ClusterApiView, accepted, with_version
from luci_web.api.problems import Problem, not_found, problem_responses
from luci_web.api.serializers import ServiceStateSerializer, TaskSerializer
from luci_web.clusters import service_commands
from luci_web.clusters.edits import services as edits
from rgmanager.states import RGCode

SUBTREES = ("critical", "independent", "non-critical")
KINDS = ("service", "vm")


# -- the JSON shapes ----------------------------------------------------------------------------------------------
SECRETS_SET_HELP = "the secret attributes set (passwd, password, ...): write-only, their values are never given"


class _ResourceNodeFields(serializers.Serializer):
    type = serializers.CharField(max_length=64, help_text="ip, fs, script, nfsexport, ... (a resource type)")
    ref = serializers.CharField(max_length=256, allow_null=True, required=False, default=None,
                                help_text="the key of a global resource of this type; null: defined inline")
    subtree = serializers.ChoiceField(SUBTREES, default="critical",
                                      help_text="__independent_subtree: critical (unset), independent (1) or "
                                                "non-critical (2)")
    enforce_timeouts = serializers.BooleanField(default=False, help_text="__enforce_timeouts")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["children"] = type(self)(many=True, required=False, default=list)
        return fields


class ResourceNodeSerializer(_ResourceNodeFields):
    """A node of a resource tree: a use of a global resource (`ref`) or an inline definition (`attributes`)."""

    attributes = serializers.DictField(
        child=serializers.CharField(allow_blank=True), help_text="the element's attributes as written (ref, the two "
                                                                 "flags and the secret ones apart)")
    secrets_set = serializers.ListField(child=serializers.CharField(), help_text=SECRETS_SET_HELP)


@extend_schema_serializer(component_name="ResourceNode")
class ResourceNodeWriteSerializer(_ResourceNodeFields):
    """A node of a wanted resource tree: a use of a global resource (`ref`) or an inline definition
    (`attributes`). A secret attribute the node does not name keeps its value when the node is kept."""

    attributes = serializers.DictField(
        child=serializers.CharField(allow_null=True, allow_blank=True, max_length=4096, trim_whitespace=False),
        required=False, default=dict,
        help_text="the element's attributes (ref and the two flags apart); a secret not named keeps its value, "
                  "null removes it")


class ServiceSerializer(serializers.Serializer):
    """A service or vm: its definition and the state the last status reading gave (null: not in it)."""

    id = serializers.CharField(help_text="service:<name> or vm:<name>")
    name = serializers.CharField()
    kind = serializers.ChoiceField(KINDS)
    url = serializers.CharField()
    domain = serializers.CharField(allow_null=True)
    autostart = serializers.BooleanField()
    exclusive = serializers.BooleanField()
    recovery = serializers.CharField()
    max_restarts = serializers.IntegerField(allow_null=True)
    restart_expire_time = serializers.CharField(allow_null=True, help_text="a time as written: 300, 5m, ...")
    attributes = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                       help_text="the other attributes (depend, a vm's path, ...) but the secret "
                                                 "ones")
    secrets_set = serializers.ListField(child=serializers.CharField(), help_text=SECRETS_SET_HELP)
    resources = ResourceNodeSerializer(many=True)
    status = ServiceStateSerializer(allow_null=True)


class _AttributesFields(serializers.Serializer):
    domain = serializers.CharField(max_length=256, allow_null=True, allow_blank=True, required=False,
                                   help_text="a failover domain; null or empty: none")
    autostart = serializers.BooleanField(required=False, help_text="default true")
    exclusive = serializers.BooleanField(required=False, help_text="default false")
    recovery = serializers.ChoiceField(edits.RECOVERY, required=False, help_text="default restart")
    max_restarts = serializers.IntegerField(min_value=0, max_value=edits.MAX_RESTARTS, allow_null=True,
                                            required=False, help_text="0 or null: no limit")
    restart_expire_time = serializers.CharField(max_length=32, allow_null=True, allow_blank=True, required=False,
                                                help_text="e.g. 300 or 5m")


class ServiceWriteSerializer(_AttributesFields):
    """A whole definition (PUT; POST adds name and kind): absent attributes take the schema's defaults; a secret
    attribute (a vm's migrate_passwd, ...) not named keeps its value, null removes it."""

    attributes = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True,
                                                                   max_length=4096, trim_whitespace=False),
                                       required=False, default=dict,
                                       help_text="the other attributes; a secret not named keeps its value, null "
                                                 "removes it")
    resources = ResourceNodeWriteSerializer(many=True, required=False, default=list)
    name = serializers.CharField(required=False, help_text="if given, the one in the URL")
    kind = serializers.ChoiceField(KINDS, required=False, help_text="if given, the one in the URL")


class ServiceCreateSerializer(ServiceWriteSerializer):
    name = serializers.RegexField(f"^{edits.SERVICE_NAME.pattern}$", max_length=64,
                                  help_text="1-64 letters, digits, '.', '_' or '-'")
    kind = serializers.ChoiceField(KINDS, default="service")


class ServicePatchSerializer(_AttributesFields):
    """Only the attributes given change; null removes one (its default applies)."""

    recovery = serializers.ChoiceField(edits.RECOVERY, required=False, allow_null=True)
    attributes = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True,
                                                                   max_length=4096, trim_whitespace=False),
                                       required=False, help_text="other attributes: a string sets, null removes")


class ServiceActionSerializer(serializers.Serializer):
    node = serializers.CharField(max_length=255, required=False, allow_null=True,
                                 help_text="the target member: enable and relocate (optional), migrate (required)")


class ServiceActionResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    command = serializers.CharField()
    service = serializers.CharField()
    target = serializers.CharField(allow_null=True)
    code = serializers.IntegerField(help_text="rgmanager's RG code (0 success, -10 already running)")
    text = serializers.CharField(help_text="the RG code's string")
    owner = serializers.CharField(allow_null=True, help_text="where the service runs afterwards")
    node = serializers.CharField(allow_null=True, help_text="the member that carried the request")
    message = serializers.CharField()
    warning = serializers.BooleanField(help_text="success, but it runs elsewhere than the node asked for")


# -- helpers -----------------------------------------------------------------------------------------------------
def bad_request(exc: edits.FormError) -> Problem:
    field = exc.field or "non_field_errors"
    return Problem(400, "BAD_REQUEST", f"{field}: {exc}", errors={field: [str(exc)]})


def service_ref(service: str) -> str:
    """`web` -> `service:web`; 404 for what cannot name a service."""
    ref = service_commands.full_name(service)
    if not edits.SERVICE_REF.match(ref) or edits.xml_unsafe(ref):
        raise not_found(f"{service[:64]!r} is not a service or vm name (web, service:web, vm:guest)")
    return ref


def states_of(status: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {str(s.get("name")): s for s in (status or {}).get("services") or []}


def service_body(element: Any, base: str, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A service's definition with its url (`base`: the list's) and its last state."""
    body = edits.service_dict(element)
    return body | {"url": f"{base}{quote(body['id'], safe=':')}/", "status": states.get(body["id"])}


def bounded_tree(data: Any) -> Any:
    """The request's body once its resource tree is known to be small enough for the (recursive) serializer:
    at most MAX_TREE_DEPTH levels and MAX_TREE_NODES resources, else 400 before any recursion."""
    if not isinstance(data, dict):
        return data
    stack = [(data.get("resources"), 1)]
    seen = 0
    while stack:
        nodes, depth = stack.pop()
        if not isinstance(nodes, list):
            continue
        seen += len(nodes)
        if depth > edits.MAX_TREE_DEPTH or seen > edits.MAX_TREE_NODES:
            raise Problem(400, "BAD_REQUEST", f"resources: a resource tree has at most {edits.MAX_TREE_DEPTH} "
                          f"levels and {edits.MAX_TREE_NODES} resources",
                          errors={"resources": ["the resource tree is too large"]})
        stack.extend((n.get("children"), depth + 1) for n in nodes if isinstance(n, dict))
    return data


def whole(data: dict[str, Any]) -> tuple[dict[str, str | None], tuple[edits.NewResource, ...]]:
    """A whole definition's attributes and tree, checked (400 naming the field)."""
    try:
        return edits.definition_attrs(data), edits.tree_from(data.get("resources") or [])
    except edits.FormError as exc:
        raise bad_request(exc) from None


def count(tree: tuple[edits.NewResource, ...]) -> int:
    return sum(1 + count(node.children) for node in tree)


def audit_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The typed attributes for the audit log (the other attributes by name only: a vm's may hold a secret)."""
    return {k: v for k, v in attrs.items() if k in edits.TYPED} | {
        "other": sorted(k for k in attrs if k not in edits.TYPED)}


PATH_SERVICE = OpenApiParameter("service", OpenApiTypes.STR, OpenApiParameter.PATH,
                                description="web, service:web or vm:guest")


# -- the views ---------------------------------------------------------------------------------------------------
class ServiceList(ClusterApiView):
    @extend_schema(operation_id="services_list", responses={200: ServiceSerializer(many=True),
                                                            **problem_responses(503)},
                   summary="Every service and vm: definition, resource tree and state",
                   description="The definitions come from the configuration (ETag: its version); `status` from "
                               "the last status reading luci's watcher made (null: not in it).")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        states = states_of(self.cluster.status)
        base = reverse("api:service_list", args=[self.cluster.name])
        body = [service_body(s, base, states) for s in edits.service_elements(current.conf)]
        return with_version(Response(body), current.version)

    @extend_schema(operation_id="services_create", request=ServiceCreateSerializer,
                   responses={202: TaskSerializer, **problem_responses(409, 412, 422, 503)},
                   summary="Create a service or vm with its resource tree (a configuration push)",
                   description="409 SERVICE_EXISTS; 404 DOMAIN_NOT_FOUND or RESOURCE_NOT_FOUND when the domain or "
                               "a ref does not exist.")
    def post(self, request: Request, cluster: str) -> Response:
        data = ServiceCreateSerializer(data=bounded_tree(request.data))
        data.is_valid(raise_exception=True)
        attrs, tree = whole(data.validated_data)
        name, kind = data.validated_data["name"], data.validated_data["kind"]
        op = self.change(edits.create_service(name, attrs, tree, kind=kind), action="service.create",
                         target=f"{kind}:{name}", detail={"attrs": audit_attrs(attrs), "resources": count(tree)})
        return accepted(op)


class ServiceDetail(ClusterApiView):
    def found(self, service: str) -> tuple[Any, str, Any]:
        """(the current configuration, the service's ref, its element); 404 when it is not defined."""
        ref = service_ref(service)
        current = self.current()
        defined = edit.find_service(current.conf, ref)
        if defined is None:
            raise Problem(404, "SERVICE_NOT_FOUND", f"{ref} is not in the configuration (version {current.version})")
        return current, ref, defined

    @extend_schema(operation_id="services_retrieve", parameters=[PATH_SERVICE],
                   responses={200: ServiceSerializer, **problem_responses(503)},
                   summary="One service or vm: definition, resource tree and state")
    def get(self, request: Request, cluster: str, service: str) -> Response:
        current, _, defined = self.found(service)
        base = reverse("api:service_list", args=[self.cluster.name])
        return with_version(Response(service_body(defined, base, states_of(self.cluster.status))), current.version)

    @extend_schema(operation_id="services_replace", parameters=[PATH_SERVICE], request=ServiceWriteSerializer,
                   responses={202: TaskSerializer, **problem_responses(412, 422, 503)},
                   summary="Replace a definition: attributes and resource tree (a configuration push)",
                   description="Resources kept (same type and key at the same place) are changed in place, so "
                               "their action overrides stay; the others are removed, new ones appended. A resource "
                               "without a key (unknown XML without a name) is kept.")
    def put(self, request: Request, cluster: str, service: str) -> Response:
        ref = service_ref(service)
        data = ServiceWriteSerializer(data=bounded_tree(request.data))
        data.is_valid(raise_exception=True)
        kind, _, name = ref.partition(":")
        for key, value in (("name", name), ("kind", kind)):
            given = data.validated_data.get(key)
            if given is not None and given != value:
                raise Problem(400, "BAD_REQUEST", f"{key}: {given!r} is not the {key} in the URL ({value!r})",
                              errors={key: ["not the one in the URL (renaming is not supported)"]})
        attrs, tree = whole(data.validated_data)
        op = self.change(edits.replace_service(ref, attrs, tree), action="service.replace", target=ref,
                         detail={"attrs": audit_attrs(attrs), "resources": count(tree)})
        return accepted(op)

    @extend_schema(operation_id="services_update", parameters=[PATH_SERVICE], request=ServicePatchSerializer,
                   responses={202: TaskSerializer, **problem_responses(412, 422, 503)},
                   summary="Change some attributes of a service or vm (a configuration push)")
    def patch(self, request: Request, cluster: str, service: str) -> Response:
        ref = service_ref(service)
        data = ServicePatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            attrs = edits.patch_attrs(data.validated_data)
        except edits.FormError as exc:
            raise bad_request(exc) from None
        if not attrs:
            raise Problem(400, "BAD_REQUEST", "nothing to change: give at least one attribute")
        op = self.change(edits.change_service(ref, attrs), action="service.edit", target=ref,
                         detail={"attrs": audit_attrs(attrs)})
        return accepted(op)

    @extend_schema(operation_id="services_destroy", parameters=[PATH_SERVICE], request=None,
                   responses={202: TaskSerializer, **problem_responses(412, 422, 503)},
                   summary="Delete a service or vm (a configuration push)",
                   description="422 when another service still depends on it.")
    def delete(self, request: Request, cluster: str, service: str) -> Response:
        ref = service_ref(service)
        op = self.change(edits.delete_service(ref), action="service.delete", target=ref, detail={})
        return accepted(op)


def rg_name(code: int) -> str:
    try:
        return f"RG_{RGCode(code).name}"
    except ValueError:
        return "RG_UNKNOWN"


class ServiceAction(ClusterApiView):
    @extend_schema(
        operation_id="services_action", request=ServiceActionSerializer,
        parameters=[PATH_SERVICE, OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                   enum=list(service_commands.COMMANDS))],
        responses={200: ServiceActionResultSerializer, **problem_responses(409, 503)},
        summary="Run a service command (clusvcadm's): enable, disable, relocate, migrate, restart, stop, freeze, "
                "unfreeze, convalesce",
        description="Synchronous (at most about 28 s) and audited. rgmanager refusing or failing answers 409 with "
                    "code RG_<NAME> (e.g. RG_EFROZEN), rg_code and rg_text; no node answering, 503.")
    def post(self, request: Request, cluster: str, service: str, action: str) -> Response:
        ref = service_ref(service)
        body = ServiceActionSerializer(data=request.data if request.data else {})
        body.is_valid(raise_exception=True)
        target = body.validated_data.get("node") or None
        if action not in service_commands.COMMANDS:
            raise Problem(400, "BAD_REQUEST", f"unknown service command {action[:32]!r}; one of: "
                          f"{', '.join(service_commands.COMMANDS)}")
        if target is not None and action not in service_commands.TAKES_TARGET:
            raise Problem(400, "BAD_REQUEST", f"{action} takes no node", errors={"node": [f"{action} takes no node"]})
        if target is not None and target not in {n.name for n in self.cluster.nodes.all()}:
            raise Problem(400, "BAD_REQUEST", f"node: {target[:64]!r} is not a node of {self.cluster.name}",
                          errors={"node": ["not a node of this cluster"]})
        try:
            result = service_commands.run(self.cluster, request.user, ref, action, target)
        except service_commands.BadCommand as exc:
            raise Problem(400, "BAD_REQUEST", str(exc)) from None
        if result.code is None:
            if result.node is None:
                raise Problem(503, "NO_NODE_ANSWERED", result.message)
            raise Problem(503, "NO_ANSWER", result.message + " (the outcome is unknown: look at the status)",
                          node=result.node)
        if not result.ok:
            raise Problem(409, rg_name(result.code), result.message, rg_code=result.code, rg_text=result.text,
                          owner=result.owner, node=result.node)
        return Response({"ok": result.ok, "command": result.command, "service": result.service,
                         "target": result.target, "code": result.code, "text": result.text, "owner": result.owner,
                         "node": result.node, "message": result.message, "warning": result.warning})


urlpatterns = [
    path("clusters/<str:cluster>/services/", ServiceList.as_view(), name="service_list"),
    path("clusters/<str:cluster>/services/<str:service>/", ServiceDetail.as_view(), name="service_detail"),
    path("clusters/<str:cluster>/services/<str:service>/<str:action>/", ServiceAction.as_view(),
         name="service_action"),
]
