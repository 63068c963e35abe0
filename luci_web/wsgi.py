"""WSGI entry point (the console is served over ASGI by daphne; WSGI is kept for tools that need it)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "luci_web.settings")
application = get_wsgi_application()
