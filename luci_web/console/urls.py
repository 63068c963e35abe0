"""The console's routes: each area's views module holds its own urlpatterns (luci_web/console/views/)."""
from luci_web.console.views import (
    configure,
    domains,
    events,
    fence,
    history,
    logs,
    nodes,
    overview,
    registry,
    resources,
    services,
    session,
    tokens,
    users,
    whatif,
)

app_name = "console"
urlpatterns = [
    *session.urlpatterns, *overview.urlpatterns, *registry.urlpatterns, *users.urlpatterns,
    *nodes.urlpatterns, *fence.urlpatterns, *domains.urlpatterns, *resources.urlpatterns, *services.urlpatterns,
    *configure.urlpatterns, *history.urlpatterns, *events.urlpatterns, *whatif.urlpatterns, *logs.urlpatterns,
    *tokens.urlpatterns,
]
