"""API Tokens: each signed-in user's own tokens for scripts (the REST API at /api/v1/). Making one shows its text
on the answering page only (that page is not stored: every console page is no-store); luci keeps a hash.
Making and revoking are audited through luci_web.api.token_changes, as the API and `manage.py apitoken` do."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST

from luci_web.api import token_changes
from luci_web.api.models import ApiToken

VIA = "console"


class NewTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what the token is for, e.g. 'nightly backup script'")
    expires_in_days = forms.IntegerField(required=False, min_value=1, max_value=token_changes.MAX_DAYS,
                                         label="Expires after (days)", help_text="blank: works until revoked")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("the name must not be blank")
        return name


def _page(request: HttpRequest, form: NewTokenForm, **extra: object) -> HttpResponse:
    rows = ApiToken.objects.filter(user=request.user)
    return render(request, "console/tokens.html", {"form": form, "tokens": rows, **extra},
                  status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request, NewTokenForm())
    form = NewTokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form)
    row, text = token_changes.make(request.user, form.cleaned_data["name"],
                                   token_changes.expiry_in(form.cleaned_data["expires_in_days"]),
                                   by=request.user, via=VIA)
    return _page(request, NewTokenForm(), new_token=text, new_row=row)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    row = ApiToken.objects.select_related("user").filter(pk=token_id, user=request.user).first()
    if row is None:
        raise Http404("no such token of yours")
    if token_changes.revoke(row, by=request.user, via=VIA):
        messages.success(request, f"Token {row.prefix} ({row.name}) revoked.")
    else:
        messages.info(request, f"Token {row.prefix} was revoked already.")
    return redirect("console:tokens")


urlpatterns = [
    path("tokens/", tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", token_revoke, name="token_revoke"),
]
