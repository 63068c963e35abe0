"""The REST API's routes, under /api/ (luci_web/urls.py): the OpenAPI document at /api/schema/, its browsable
form at /api/docs/, and the resources under /api/v1/. Each area's views module holds its own urlpatterns, and
every route's right is in luci_web.access.rights.URL_RIGHTS under "api:<name>"."""
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from luci_web.api.permissions import RouteRight
from luci_web.api.views import (
    clusters,
    config,
    domains,
    events,
    fence_devices,
    nodes,
    resources,
    services,
    settings,
    tasks,
    tokens,
    unknown,
    whatif,
)
from luci_web.api.views.docs import SwaggerDocs

app_name = "api"

v1 = [
    *clusters.urlpatterns, *nodes.urlpatterns, *services.urlpatterns, *domains.urlpatterns,
    *fence_devices.urlpatterns, *resources.urlpatterns, *settings.urlpatterns, *config.urlpatterns,
    *whatif.urlpatterns, *events.urlpatterns, *tasks.urlpatterns, *tokens.urlpatterns,
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[RouteRight]), name="schema"),
    path("docs/", SwaggerDocs.as_view(url_name="api:schema", permission_classes=[RouteRight]), name="docs"),
    path("v1/", include(v1)),
    *unknown.urlpatterns,  # last: any other path under /api/ is a 404 problem
]
