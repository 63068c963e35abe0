"""ASGI entry point for daphne (Channels routing arrives with the console in step 6)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "luci_web.settings")
application = get_asgi_application()
