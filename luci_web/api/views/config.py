"""The configuration document: GET it (JSON, or cluster.conf's text with Accept: application/xml), PUT a whole new
one (If-Match required), its history (versions with who and why, one version, the semantic diff of two) and
rollback. Secret values (fence passwords ...) are never given: they read `********`, and a PUT that gives
`********` back keeps the current value."""
from __future__ import annotations

import json
from typing import Any, ClassVar

from django.urls import path, re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf import ClusterConf, ConfigError
from cluster_conf.diff import diff
from luci_web.api.base import ClusterApiView, accepted, if_match, reason_of, with_version
from luci_web.api.problems import Problem, problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.serializers_config import (
    ConfigDocumentSerializer,
    ConfigPutSerializer,
    DiffSerializer,
    HistorySerializer,
    RollbackSerializer,
)
from luci_web.clusters import configs, documents, history

XML = "application/xml"


class XmlRenderer(BaseRenderer):
    """cluster.conf's text as it is (a view answers a str); a problem (a dict) as its JSON."""

    media_type = XML
    format = "xml"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, str):
            return data.encode("utf-8")
        return json.dumps(data, ensure_ascii=False).encode("utf-8")


class XmlParser(BaseParser):
    """A body of cluster.conf's text: given to the view as {"xml_bytes": bytes} (cluster_conf decodes it as the
    XML declaration says)."""

    media_type = XML

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> dict[str, bytes]:
        return {"xml_bytes": stream.read() if stream is not None else b""}


def document_answer(request: Request, conf: ClusterConf, xml: str, version: int) -> Response:
    """The document in the negotiated form: the XML text or the JSON object, secrets masked either way."""
    masked = documents.masked_xml(xml)
    if request.accepted_renderer.format == "xml":
        return Response(masked, content_type=f"{XML}; charset=utf-8")
    return Response({"name": conf.name or "", "version": version, "xml": masked,
                     "document": documents.as_json(conf.root)})


DOCUMENT_RESPONSES = {
    (200, "application/json"): ConfigDocumentSerializer,
    (200, XML): OpenApiResponse(OpenApiTypes.STR, description="cluster.conf's text, secret values ********"),
}


class ConfigDocument(ClusterApiView):
    renderer_classes: ClassVar[list[type[BaseRenderer]]] = [JSONRenderer, XmlRenderer]
    parser_classes: ClassVar[list[type[BaseParser]]] = [JSONParser, XmlParser]

    @extend_schema(
        operation_id="config_retrieve", responses={**DOCUMENT_RESPONSES, **problem_responses(503)},
        summary="The current configuration (JSON, or XML with Accept: application/xml)",
        description="The ETag is the config version: send it back as If-Match with PUT. Secret values (fence "
                    "passwords ...) read `********`.")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        return with_version(document_answer(request, current.conf, current.xml, current.version), current.version)

    @extend_schema(
        operation_id="config_replace",
        request={"application/json": ConfigPutSerializer, XML: OpenApiTypes.STR},
        responses={202: TaskSerializer, **problem_responses(409, 412, 422, 428, 503)},
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, required=True,
                                     description='the ETag of GET …/config/ this document is based on, e.g. "17"'),
                    OpenApiParameter("X-Luci-Reason", str, OpenApiParameter.HEADER,
                                     description="why (kept with the new version)")],
        summary="Replace the whole configuration (202: the push task)",
        description="The body is cluster.conf's text (Content-Type: application/xml) or {\"xml\": ..., "
                    "\"reason\": ...}. The new version is always the current one + 1, whatever config_version "
                    "the document carries. A secret given as `********` keeps its current value. Refused: 428 "
                    "without If-Match, 412 when the cluster moved on (current_version, diff), 400 XML_MALFORMED "
                    "when the text is not well-formed, 422 with the validation reports when it does not validate, "
                    "renames the cluster (CLUSTER_RENAMED) or adds or removes nodes (NODES_CHANGED).",
        examples=[OpenApiExample("JSON body", value={"xml": "<cluster name=\"alpha\" config_version=\"8\">…"
                                                            "</cluster>", "reason": "ticket 42"},
                                 request_only=True, media_type="application/json")])
    def put(self, request: Request, cluster: str) -> Response:
        base = if_match(request, required=True)
        raw, reason = self._body(request)
        try:
            new = ClusterConf.from_bytes(raw, source="the document")
        except ConfigError as exc:
            report = exc.report.to_dict()
            if exc.report.code.startswith("XML_"):
                raise Problem(400, exc.report.code, exc.report.message, reports=[report]) from None
            raise configs.ConfigRejected(exc.report.message, [report]) from None
        op = self.change(documents.replace_with(new), action="config.replace", target="cluster.conf",
                         reason=reason, detail={"base_version": base})
        return accepted(op)

    def _body(self, request: Request) -> tuple[bytes, str]:
        data = request.data
        if isinstance(data, dict) and "xml_bytes" in data:
            return data["xml_bytes"], reason_of(request)
        body = ConfigPutSerializer(data=data)
        body.is_valid(raise_exception=True)
        return body.validated_data["xml"].encode("utf-8"), body.validated_data.get("reason") or reason_of(request)


def history_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "time": row["time"].isoformat()}


class HistoryList(ClusterApiView):
    @extend_schema(operation_id="config_history_list", responses={200: HistorySerializer, **problem_responses(503)},
                   summary="Every accepted configuration version, newest first, with who pushed it and why")
    def get(self, request: Request, cluster: str) -> Response:
        versions, node, note = history.versions_of(self.cluster)
        if not node:
            raise configs.ConfigUnavailable(note)
        current = next((v["version"] for v in versions if v["current"]), None)
        body = {"current_version": current, "answered_by": node, "versions": [history_entry(v) for v in versions]}
        return with_version(Response(body), current)


def version_of(cluster: Any, version: int) -> ClusterConf:
    try:
        return history.version_document(cluster, version)
    except history.VersionNotFound as exc:
        raise Problem(404, "VERSION_NOT_FOUND", str(exc)) from None


class HistoryVersion(ClusterApiView):
    renderer_classes: ClassVar[list[type[BaseRenderer]]] = [JSONRenderer, XmlRenderer]

    @extend_schema(operation_id="config_history_retrieve", responses={**DOCUMENT_RESPONSES, **problem_responses(503)},
                   summary="One version of the configuration (JSON, or XML with Accept: application/xml)",
                   description="404 VERSION_NOT_FOUND when the nodes' history does not hold it. The ETag is "
                               "that version.")
    def get(self, request: Request, cluster: str, version: str) -> Response:
        number = int(version)  # the route's regex: 1 to 9 digits
        conf = version_of(self.cluster, number)
        return with_version(document_answer(request, conf, conf.to_string(), conf.config_version or number), number)


class HistoryDiff(ClusterApiView):
    @extend_schema(
        operation_id="config_history_diff", responses={200: DiffSerializer, **problem_responses(503)},
        parameters=[OpenApiParameter("from", int, required=True, description="the older version"),
                    OpenApiParameter("to", int, description="the newer version (default: the current one)")],
        summary="The semantic diff of two versions (secrets never shown)")
    def get(self, request: Request, cluster: str) -> Response:
        old = _version_param(request, "from", required=True)
        new = _version_param(request, "to")
        if new is None:
            new = self.current().version
        assert old is not None
        result = diff(version_of(self.cluster, old), version_of(self.cluster, new))
        return Response({"from_version": old, "to_version": new, "diff": result.to_dict(), "text": result.to_text()})


def _version_param(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise exceptions.ValidationError({name: ["this parameter is required (a version number)"]})
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise exceptions.ValidationError({name: ["must be a version number"]})
    return int(raw)


class HistoryRollback(ClusterApiView):
    @extend_schema(
        operation_id="config_history_rollback", request=RollbackSerializer,
        responses={202: TaskSerializer, **problem_responses(412, 422, 503)},
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER,
                                     description='optional: the version you decided on, e.g. "17" (412 when the '
                                                 'cluster moved on)')],
        summary="Push an old version's content as a new version (current + 1)",
        description="422 when the version is the current one or does not validate any more; 404 "
                    "VERSION_NOT_FOUND when the nodes' history does not hold it.")
    def post(self, request: Request, cluster: str, version: str) -> Response:
        number = int(version)  # the route's regex: 1 to 9 digits
        body = RollbackSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        reason = (body.validated_data.get("reason") or reason_of(request)).strip()[:500]
        try:
            op, _ = history.rollback(self.cluster, request.user, number, if_match(request), reason)
        except history.VersionNotFound as exc:
            raise Problem(404, "VERSION_NOT_FOUND", str(exc)) from None
        except ConfigError as exc:
            raise configs.ConfigRejected(exc.report.message, [exc.report.to_dict()]) from None
        return accepted(op)


urlpatterns = [
    path("clusters/<str:cluster>/config/", ConfigDocument.as_view(), name="config"),
    path("clusters/<str:cluster>/config/history/", HistoryList.as_view(), name="history_list"),
    # a version has at most 9 digits (as _version_param and If-Match read it): a longer one is no path at all (404)
    re_path(r"^clusters/(?P<cluster>[^/]+)/config/history/(?P<version>[0-9]{1,9})/$", HistoryVersion.as_view(),
            name="history_version"),
    path("clusters/<str:cluster>/config/diff/", HistoryDiff.as_view(), name="history_diff"),
    re_path(r"^clusters/(?P<cluster>[^/]+)/config/history/(?P<version>[0-9]{1,9})/rollback/$",
            HistoryRollback.as_view(), name="history_rollback"),
]
