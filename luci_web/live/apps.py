from django.apps import AppConfig


class Config(AppConfig):
    name = "luci_web.live"
    label = "live"
    default_auto_field = "django.db.models.BigAutoField"
