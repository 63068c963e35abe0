"""Log in and out. Logins are throttled: after LOGIN_ATTEMPTS failures for one user name or one client address
within LOGIN_WINDOW seconds, further attempts are refused until the window passes (counted in the cache, so
every daphne process of one machine shares the count when the cache is shared). Failures are audited."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import path

from luci_web.audit.log import record

THROTTLED = "Too many failed logins; wait a few minutes and try again."


def _keys(request: HttpRequest) -> list[str]:
    name = (request.POST.get("username") or "").strip().lower()[:150]
    return [f"luci-login-user:{name}", f"luci-login-addr:{request.META.get('REMOTE_ADDR', '')}"]


def throttled(request: HttpRequest) -> bool:
    return any((cache.get(k) or 0) >= settings.LOGIN_ATTEMPTS for k in _keys(request))


def count_failure(request: HttpRequest) -> None:
    for key in _keys(request):
        if cache.add(key, 1, settings.LOGIN_WINDOW):
            continue
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, settings.LOGIN_WINDOW)


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:  # type: ignore[no-untyped-def]
        if throttled(request):
            record(None, "login", target=request.POST.get("username", "")[:150], result="refused",
                   message="too many failed logins")
            # an unbound form: the posted password is not even checked while the window lasts
            form = self.form_class(request=request, initial={"username": request.POST.get("username", "")[:150]})
            return self.render_to_response(self.get_context_data(form=form, refusal=THROTTLED), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):  # type: ignore[no-untyped-def]
        count_failure(self.request)
        record(None, "login", target=self.request.POST.get("username", "")[:150], result="failed",
               message="wrong user name or password")
        return super().form_invalid(form)

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        for key in _keys(self.request):
            cache.delete(key)
        record(form.get_user(), "login")
        return response


urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only (Django 5): no logout by link
]
