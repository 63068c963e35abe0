"""Settings of the luci console, read from the environment.

SECRET_KEY, DEBUG, ALLOWED_HOSTS, DATABASE_URL (SQLite by default), REDIS_URL (set by `manage.py demo` from the
embedded server when unset: luci_web/embedded_redis.py), LUCI_HOME (luci's own files: its ricci client key;
default var/luci beside manage.py), LUCI_PORT (8084), LUCI_TLS=1 when served over HTTPS (Secure cookies, HSTS).
docs/deploy.md explains them.
"""
import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DEBUG", "0") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
LUCI_HOME = Path(os.environ.get("LUCI_HOME") or BASE_DIR / "var" / "luci")
LUCI_PORT = int(os.environ.get("LUCI_PORT") or 8084)
LUCI_TLS = os.environ.get("LUCI_TLS", "0") == "1"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_results",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "luci_web",
    "luci_web.access",
    "luci_web.audit",
    "luci_web.clusters",
    "luci_web.live",
    "luci_web.console",
    "luci_web.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "luci_web.console.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "luci_web.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "luci_web.wsgi.application"
ASGI_APPLICATION = "luci_web.asgi.application"


def _database_from_url(url: str | None) -> dict:
    """SQLite by default; `sqlite:///path` or `postgres://user:pass@host:port/name` otherwise."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3",
                "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}
    from urllib.parse import urlparse

    parts = urlparse(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path or ":memory:",
                "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"}}
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use sqlite:// or postgres://)")


DATABASES = {"default": _database_from_url(os.environ.get("DATABASE_URL"))}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:overview"
LOGOUT_REDIRECT_URL = "console:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- Redis: one protocol for the channel layer, the broker and the results (stack-notes §2) -------------------
REDIS_URL = os.environ.get("REDIS_URL", "")


def celery_url(url: str) -> str:
    """kombu spells a unix socket `redis+socket:///path`; redis-py and channels-redis `unix:///path?db=0`."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://"):].split("?")[0]
    return url


if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [REDIS_URL], "capacity": 500, "expiry": 30}}}
    CELERY_BROKER_URL = celery_url(REDIS_URL)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:  # tests and `manage.py check` without a server; `manage.py demo` always sets REDIS_URL for its children
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.05}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_EAGER", "0") == "1"

# -- Security: the pcsd baseline (field-anchors §4.3) and Django's own ------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 8 * 3600
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
LUCI_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
if LUCI_TLS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 2 * 365 * 24 * 3600
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = os.environ.get("LUCI_SSL_REDIRECT", "1") == "1"
# -- the REST API (docs/api.md): tokens or the console's session (CSRF enforced), problem+json errors ----------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["luci_web.api.authentication.BearerToken",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["luci_web.api.permissions.RouteRight"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "luci_web.api.problems.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "luci REST API",
    "DESCRIPTION": "Everything the luci console does, for scripts. Errors are RFC 9457 problem details "
                   "(application/problem+json). docs/api.md walks through it.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None},  # never ask validator.swagger.io (and the CSP forbids it)
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "luci_web.api.problems.document_problems"],
    "SECURITY": [{"bearerAuth": []}, {"cookieAuth": []}],
    "APPEND_COMPONENTS": {"securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token: luci_<prefix>_<secret>"},
        "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"}}},
    "AUTHENTICATION_WHITELIST": [],
    "ENUM_NAME_OVERRIDES": {"MemberStateEnum": ["online", "offline", "unknown"]},
}

LOGIN_ATTEMPTS = 5  # failures per user name and per client address ...
LOGIN_WINDOW = 300  # ... within this many seconds before logins are refused for the rest of the window

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"luci": {"handlers": ["console"], "level": os.environ.get("LUCI_LOG_LEVEL", "INFO")}},
}
