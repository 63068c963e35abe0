"""Errors as RFC 9457 problem details (`application/problem+json`), with the same codes as the CLIs' reports.

    {"type": "urn:luci:problem:config-conflict", "title": "Precondition Failed", "status": 412,
     "detail": "the configuration moved on from version 7 to 8 since you loaded it; nothing was changed",
     "instance": "/api/v1/clusters/alpha/config/", "code": "CONFIG_CONFLICT", ...extension members}

`code` is stable and documented (docs/api.md): cluster_conf's report codes (DOMAIN_NOT_FOUND, BAD_ARGUMENT, …),
rgmanager's RG codes by name for service commands (RG_EFROZEN, …), and the API's own (NOT_AUTHENTICATED,
PERMISSION_DENIED, NOT_FOUND, CONFIG_CONFLICT, INVALID_CONFIG, NO_NODE_ANSWERED, …). Extension members:
`errors` (400: field -> messages), `reports` (422: validation reports), `base_version`/`current_version`/`diff`
(412), `rg_code`/`rg_text` (service commands). A secret never appears in a problem: messages come from our own
code, and values the user typed are not echoed.

`exception_handler` turns every exception a view raises into one; `problem_responses` documents them in the
OpenAPI schema, and `document_problems` (a drf-spectacular postprocessing hook) adds the ones every operation can
answer (401, 403, 404, 406; 400 and 415 for operations that take a body or parameters).
"""
from __future__ import annotations

import json
import logging
import traceback
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers

from luci_web.clusters import configs

log = logging.getLogger("luci.api")

MEDIA_TYPE = "application/problem+json"


class Problem(exceptions.APIException):
    """An error the API answers with: status, code, one-line detail, and extension members."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status
        self.code = code
        self.extra = extra


def not_found(what: str) -> Problem:
    return Problem(404, "NOT_FOUND", what)


# DRF's own exceptions, by class: the code the problem carries
_DRF_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "NOT_AUTHENTICATED"),
    (exceptions.AuthenticationFailed, "AUTHENTICATION_FAILED"),
    (exceptions.PermissionDenied, "PERMISSION_DENIED"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.ParseError, "PARSE_ERROR"),
    (exceptions.ValidationError, "BAD_REQUEST"),
    (exceptions.Throttled, "THROTTLED"),
]


def _from_config_error(exc: Exception) -> Problem | None:
    """configs' refusals: 412 (moved on), 422 (invalid; 404/409 when the edit itself was refused because the item
    it names is missing or exists already), 503 (no node answered, queue down)."""
    if isinstance(exc, configs.ConfigConflict):
        return Problem(412, "CONFIG_CONFLICT", str(exc), base_version=exc.base, current_version=exc.current,
                       diff=exc.diff_text)
    if isinstance(exc, configs.ConfigRejected):
        reports = exc.reports
        if exc.in_edit and len(reports) == 1 and str(reports[0].get("code", "")).endswith("_NOT_FOUND"):
            return Problem(404, reports[0]["code"], reports[0].get("message") or str(exc), reports=reports)
        if exc.in_edit and len(reports) == 1 and str(reports[0].get("code", "")).endswith(("_EXISTS", "_IN_USE")):
            return Problem(409, reports[0]["code"], reports[0].get("message") or str(exc), reports=reports)
        code = "INVALID_CONFIG" if reports else "BAD_VALUE"
        return Problem(422, code, str(exc), reports=reports)
    if isinstance(exc, configs.QueueUnavailable):
        return Problem(503, "QUEUE_UNAVAILABLE", str(exc))
    if isinstance(exc, configs.ConfigUnavailable):
        return Problem(503, "NO_NODE_ANSWERED", str(exc))
    return None


def as_problem(exc: Exception) -> Problem | None:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return Problem(413, "PAYLOAD_TOO_LARGE", f"the body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                       "bytes")
    if isinstance(exc, RecursionError):  # json's decoder on a body nested thousands deep (DRF catches ValueError)
        return Problem(400, "PARSE_ERROR", "the JSON body is nested too deeply")
    if isinstance(exc, Http404):
        return Problem(404, "NOT_FOUND", "not found")
    if isinstance(exc, DjangoPermissionDenied):
        return Problem(403, "PERMISSION_DENIED", str(exc) or "permission denied")
    found = _from_config_error(exc)
    if found is not None:
        return found
    for kind, code in _DRF_CODES:
        if isinstance(exc, kind):
            assert isinstance(exc, exceptions.APIException)
            if isinstance(exc, exceptions.ValidationError):
                return Problem(400, code, _validation_summary(exc.detail), errors=exc.detail)
            return Problem(exc.status_code, code, str(exc.detail))
    return None


def _validation_summary(detail: Any) -> str:
    """One line for a serializer's errors: the first field and its first message."""
    if isinstance(detail, dict) and detail:
        field, messages = next(iter(detail.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(first, dict):
            return f"{field}: {_validation_summary(first)}"
        return f"{field}: {first}" if field != "non_field_errors" else str(first)
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return "the request is not valid"


def problem_body(problem: Problem, instance: str) -> dict[str, Any]:
    status = problem.status_code
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": f"urn:luci:problem:{problem.code.lower().replace('_', '-')}", "title": title,
            "status": status, "detail": str(problem.detail), "instance": instance, "code": problem.code}
    body.update(problem.extra)
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF's EXCEPTION_HANDLER: every error as application/problem+json; an unexpected one is logged (its kind
    only: its text may hold a value the user typed) and answered 500 without detail."""
    request = context.get("request")
    instance = request.path if request is not None else ""
    problem = as_problem(exc)
    if problem is None:
        # the kind and where it happened, never the message: it may hold a value the user typed (a password)
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        log.error("API error in %s: %s at %s", instance, type(exc).__name__,
                  " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames)))
        problem = Problem(500, "INTERNAL_ERROR", "internal error: the administrator can find it in luci's log")
    # a plain HttpResponse, not DRF's Response: a problem is JSON whatever renderer the view negotiated (the
    # Swagger page's is HTML; a 406 has no acceptable renderer at all)
    body = json.dumps(problem_body(problem, instance), ensure_ascii=False, default=str)
    response = HttpResponse(body.encode(), status=problem.status_code, content_type=MEDIA_TYPE)
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(exc.wait)  # type: ignore[attr-defined]
    return response


# -- the schema -----------------------------------------------------------------------------------------------
class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details with luci's extension members."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField()
    code = serializers.CharField(help_text="stable error code (docs/api.md)")
    errors = serializers.JSONField(required=False, help_text="400: field -> messages")
    reports = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="validation reports: code, severity, message, line, path, hint")
    base_version = serializers.IntegerField(required=False)
    current_version = serializers.IntegerField(required=False)
    diff = serializers.CharField(required=False, help_text="412: what changed since base_version")
    rg_code = serializers.IntegerField(required=False, help_text="service commands: rgmanager's RG code")
    rg_text = serializers.CharField(required=False)
    owner = serializers.CharField(required=False, allow_null=True, help_text="service commands: where it runs")
    node = serializers.CharField(required=False, allow_null=True, help_text="service commands: the node asked")
    fingerprints = serializers.DictField(child=serializers.CharField(), required=False,
                                         help_text="409 on create/import: address -> the host key it offers")


DESCRIPTIONS = {
    400: "the request is not valid (errors: field -> messages)",
    401: "not authenticated (a token or a session is needed)",
    403: "authenticated, but without the right this needs",
    404: "no such cluster (or not visible to you), or no such item in it",
    406: "the Accept header asks for a type this endpoint does not give",
    409: "the request conflicts with the current state (e.g. the item exists already, or rgmanager refused)",
    413: "the body is too large",
    412: "If-Match does not match: the configuration moved on (current_version, diff)",
    415: "the request body's type is not one this endpoint takes",
    422: "the resulting configuration does not validate (reports)",
    428: "this change needs an If-Match header with the configuration version it was based on",
    503: "no node answered, or the task queue is down; nothing was changed",
}


def problem_responses(*statuses: int) -> dict[Any, OpenApiResponse]:
    """extend_schema(responses=...) entries for problem answers with these statuses."""
    return {(s, MEDIA_TYPE): OpenApiResponse(ProblemSerializer, description=DESCRIPTIONS.get(s, HTTPStatus(s).phrase))
            for s in statuses}


def document_problems(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """A postprocessing hook: every operation documents 401, 403, 404 and 406; operations with parameters also
    400, and those with a body 400, 413 and 415 (answered before the view's own code runs)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in schemas:
        return result  # no view used ProblemSerializer yet (cannot happen once any view documents a problem)
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            wanted = [401, 403, 404, 406]
            if "requestBody" in operation or operation.get("parameters"):
                wanted += [400, 413, 415] if "requestBody" in operation else [400]
            for status in wanted:
                operation["responses"].setdefault(str(status), {
                    "description": DESCRIPTIONS[status], "content": {MEDIA_TYPE: {"schema": ref}}})
    return result
