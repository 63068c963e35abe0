"""luci_web: the Django console (Channels, Celery + Redis) and the REST API; for now settings and `demo`."""
