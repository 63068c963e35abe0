"""URL routes of luci: the console at /, Django's admin at /admin/, the console's static files at /static/ and the
REST API at /api/ (luci_web.api.urls).

The static files are served through Django, with every middleware (so with the security headers): they are two
small files, and one daphne is then a whole console. A deployment behind nginx may serve /static/ itself after
`manage.py collectstatic` (docs/deploy.md)."""
from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("luci_web.api.urls")),
    re_path(r"^static/(?P<path>.+)$", serve, {"insecure": True}),
    path("", include("luci_web.console.urls")),
]
