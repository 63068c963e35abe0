"""The Celery application of the console: long operations (pushing a configuration, creating a cluster, starting
nodes) run here, in a worker, and report their per-node progress through the channel layer."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "luci_web.settings")

app = Celery("luci_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["luci_web.clusters"])
app.autodiscover_tasks(["luci_web.clusters.registry_tasks"], related_name=None)  # luci.create_cluster
