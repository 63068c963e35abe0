"""luci: the web console of the suite (Django + Channels + Celery + Redis). docs/architecture.md."""
