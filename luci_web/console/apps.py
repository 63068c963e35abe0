from django.apps import AppConfig


class Config(AppConfig):
    name = "luci_web.console"
    label = "console"
    default_auto_field = "django.db.models.BigAutoField"
