"""Fence devices (<fencedevices>): list, add, one device, replace (PUT), change (PATCH), remove.

Secrets (passwd, password, community, ...: cluster_conf.schema.is_secret) are write-only: answers list the ones
set in `secrets_set`, never a value; a PUT or PATCH that does not name a secret keeps it; the audit names the
parameters changed, never their values. Parameters the agent's metadata describes (`<agent> -o metadata`, when the
agent is installed on luci's host) are checked as the console's form checks them (choices, booleans, numbers)."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf.model import FenceDevice, view
from luci_web.api.base import ClusterApiView, accepted, with_version
from luci_web.api.problems import Problem, not_found, problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.serializers_config_items import (
    FenceDevicePatchSerializer,
    FenceDevicePutSerializer,
    FenceDeviceSerializer,
    FenceDeviceWriteSerializer,
)
from luci_web.clusters import fence_metadata
from luci_web.clusters.edits.fence_devices import (
    Params,
    add_device,
    delete_device,
    device_dict,
    metadata_problems,
    replace_device,
    update_device,
)

WRITE_PROBLEMS = problem_responses(409, 412, 422, 503)
DELETE_PROBLEMS = problem_responses(412, 422, 503)


def _row(cluster: str, device: FenceDevice) -> dict[str, Any]:
    return device_dict(device) | {"url": reverse("api:fence_device_detail", args=[cluster, device.name])}


def check_params(agent: str, params: Params) -> None:
    """400 with `errors.params` when the agent's metadata refuses a value (the value is never echoed)."""
    problems = metadata_problems(fence_metadata.agent_form(agent), params)
    if problems:
        first = next(iter(problems))
        raise Problem(400, "BAD_REQUEST", f"params.{first}: {problems[first]} ({agent}'s metadata)",
                      errors={"params": {k: [v] for k, v in problems.items()}})


def _detail(agent: str | None, params: Params) -> dict[str, Any]:
    """What the audit keeps: the agent and the parameters' names, never their values."""
    return {"agent": agent or "", "params": sorted(params)}


def _same_name(data: dict[str, Any], name: str) -> None:
    if data.get("name", name) != name:
        raise Problem(400, "BAD_REQUEST", "name: a device is renamed by adding a new one and moving its users",
                      errors={"name": ["differs from the name in the URL"]})


class FenceDeviceList(ClusterApiView):
    @extend_schema(operation_id="fence_devices_list",
                   responses={200: FenceDeviceSerializer(many=True), **problem_responses(503)},
                   summary="The shared fence devices, without their secrets (ETag: the configuration version)")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        rows = [_row(cluster, d) for d in view(current.conf).fence_devices]
        return with_version(Response(rows), current.version)

    @extend_schema(operation_id="fence_devices_create", request=FenceDeviceWriteSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS}, summary="Add a fence device",
                   description="409 FENCE_DEVICE_EXISTS when the name is taken.")
    def post(self, request: Request, cluster: str) -> Response:
        body = FenceDeviceWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        check_params(data["agent"], data["params"])
        op = self.change(add_device(data["name"], data["agent"], data["params"]), action="fence_device.add",
                         target=data["name"], detail=_detail(data["agent"], data["params"]))
        return accepted(op)


class FenceDeviceDetail(ClusterApiView):
    def _device(self, name: str) -> tuple[FenceDevice, int]:
        current = self.current()
        device = view(current.conf).fence_device(name)
        if device is None:
            raise not_found(f"no fence device named {name[:64]!r}")
        return device, current.version

    @extend_schema(operation_id="fence_devices_retrieve",
                   responses={200: FenceDeviceSerializer, **problem_responses(503)},
                   summary="One fence device, without its secrets (ETag: the configuration version)")
    def get(self, request: Request, cluster: str, name: str) -> Response:
        device, version = self._device(name)
        return with_version(Response(_row(cluster, device)), version)

    def _write(self, request: Request, name: str, serializer: type[FenceDevicePutSerializer], *,
               replace: bool) -> Response:
        body = serializer(data=request.data, partial=not replace)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        _same_name(data, name)
        params: Params = data.get("params") or {}
        agent = data.get("agent") or self._device(name)[0].agent or ""
        check_params(agent, params)
        fn = replace_device(name, data.get("agent"), params) if replace else update_device(
            name, {**({"agent": data["agent"]} if "agent" in data else {}), **params}, [])
        return accepted(self.change(fn, action="fence_device.edit", target=name, detail=_detail(agent, params)))

    @extend_schema(operation_id="fence_devices_update", request=FenceDevicePutSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Replace a fence device's parameters (secrets not named are kept)")
    def put(self, request: Request, cluster: str, name: str) -> Response:
        return self._write(request, name, FenceDevicePutSerializer, replace=True)

    @extend_schema(operation_id="fence_devices_partial_update", request=FenceDevicePatchSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Set some parameters of a fence device (null removes one; secrets not named are kept)")
    def patch(self, request: Request, cluster: str, name: str) -> Response:
        return self._write(request, name, FenceDevicePatchSerializer, replace=False)

    @extend_schema(operation_id="fence_devices_destroy", request=None,
                   responses={202: TaskSerializer, **DELETE_PROBLEMS},
                   summary="Remove a fence device (nodes' methods naming it are left for you to change)")
    def delete(self, request: Request, cluster: str, name: str) -> Response:
        return accepted(self.change(delete_device(name), action="fence_device.delete", target=name))


urlpatterns = [
    path("clusters/<str:cluster>/fence-devices/", FenceDeviceList.as_view(), name="fence_device_list"),
    path("clusters/<str:cluster>/fence-devices/<str:name>/", FenceDeviceDetail.as_view(),
         name="fence_device_detail"),
]
