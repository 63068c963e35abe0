"""URL routes of luci: the console at /, Django's admin at /admin/ (the REST API arrives in step 7)."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("luci_web.console.urls")),
]
