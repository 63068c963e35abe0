"""API tokens: each user's own. List them, make one (its text is answered once, with 201, and never again: only
a hash is kept), look at one, revoke one (DELETE; the row stays, revoked, for the audit trail). Another user's
token answers 404, as one that does not exist. Making and revoking are audited (token.create, token.revoke)."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api import token_changes
from luci_web.api.base import ApiView
from luci_web.api.models import ApiToken
from luci_web.api.problems import Problem, not_found, problem_responses

VIA = "REST API"


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="the token's public part: luci_<prefix>_…")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="to the minute")
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField(help_text="neither revoked nor expired")


class CreatedTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="the token itself: shown this once, never again")


class NewTokenSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="what the token is for, e.g. 'nightly backup script'")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="when it stops working")
    expires_in_days = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                               max_value=token_changes.MAX_DAYS,
                                               help_text="or: how many days from now it works")

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("the name must not be blank")
        return value.strip()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        at, days = attrs.get("expires_at"), attrs.get("expires_in_days")
        if at is not None and days is not None:
            raise serializers.ValidationError("give expires_at or expires_in_days, not both")
        if days is not None:
            attrs["expires_at"] = token_changes.expiry_in(days)
        elif at is not None and at <= token_changes.expiry_in(0):
            raise serializers.ValidationError({"expires_at": ["must be in the future"]})
        return attrs


def token_dict(row: ApiToken) -> dict[str, Any]:
    return {"id": row.pk, "url": reverse("api:token_detail", args=[row.pk]), "name": row.name, "prefix": row.prefix,
            "created_at": row.created_at, "expires_at": row.expires_at, "last_used_at": row.last_used_at,
            "revoked_at": row.revoked_at, "active": row.active}


def own_token(request: Request, pk: int) -> ApiToken:
    row = ApiToken.objects.select_related("user").filter(pk=pk, user=request.user).first()
    if row is None:
        raise not_found("no such token of yours")
    return row


class TokenList(ApiView):
    @extend_schema(operation_id="tokens_list", responses={200: TokenSerializer(many=True)},
                   summary="Your API tokens (revoked and expired ones too), newest first")
    def get(self, request: Request) -> Response:
        return Response([token_dict(row) for row in ApiToken.objects.filter(user=request.user)])

    @extend_schema(operation_id="tokens_create", request=NewTokenSerializer,
                   responses={201: CreatedTokenSerializer, **problem_responses(422)},
                   summary="Make a token (its text is in this answer only)",
                   description="Send it as `Authorization: Bearer <token>`. Without an expiry it works until revoked.")
    def post(self, request: Request) -> Response:
        body = NewTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        expires_at = body.validated_data.get("expires_at")
        maker = request.auth if isinstance(request.auth, ApiToken) else None
        if maker is not None and maker.expires_at is not None and (expires_at is None or expires_at > maker.expires_at):
            # a short-lived token must not mint a longer-lived one: the new token ends with the one that made it
            raise Problem(422, "TOKEN_OUTLIVES_MAKER", "a token made with a token cannot outlive it: give an expiry "
                          f"no later than {maker.expires_at.isoformat()} (or make it in the console)")
        row, text = token_changes.make(request.user, body.validated_data["name"], expires_at, by=request.user,
                                       via=VIA)
        response = Response(token_dict(row) | {"token": text}, status=201)
        response["Location"] = reverse("api:token_detail", args=[row.pk])
        return response


class TokenDetail(ApiView):
    @extend_schema(operation_id="tokens_retrieve", responses={200: TokenSerializer}, summary="One of your tokens")
    def get(self, request: Request, pk: int) -> Response:
        return Response(token_dict(own_token(request, pk)))

    @extend_schema(operation_id="tokens_revoke", responses={204: None},
                   summary="Revoke one of your tokens (at once; revoking a revoked one changes nothing)")
    def delete(self, request: Request, pk: int) -> Response:
        token_changes.revoke(own_token(request, pk), by=request.user, via=VIA)
        return Response(status=204)


urlpatterns = [
    path("tokens/", TokenList.as_view(), name="token_list"),
    path("tokens/<int:pk>/", TokenDetail.as_view(), name="token_detail"),
]
