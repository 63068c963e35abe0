from django.apps import AppConfig


class Config(AppConfig):
    name = "luci_web.clusters"
    label = "clusters"
    default_auto_field = "django.db.models.BigAutoField"
