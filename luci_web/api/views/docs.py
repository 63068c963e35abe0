"""The browsable form of the OpenAPI document, at /api/docs/: drf-spectacular's Swagger UI (the split view, whose
script is served from a URL of its own) with its inline <style> moved to luci_web/api/static/api/swagger_ui.css,
so the page runs under the console's content security policy (luci_web.settings.LUCI_CSP: no 'unsafe-inline').
It is a page, not a resource: it answers GET and HEAD only (DRF's OPTIONS metadata has no HTML form)."""
from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerSplitView


class SwaggerDocs(SpectacularSwaggerSplitView):
    template_name = "api/swagger_ui.html"
    http_method_names = ("get", "head")
