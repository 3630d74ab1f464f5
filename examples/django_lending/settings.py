"""Settings of the example site. Environment: FRESHLINK_URL, LENDING_DATABASE (a SQLite file
or a postgresql:// URL), DJANGO_DEBUG."""

from __future__ import annotations

import os
import urllib.parse

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "freshlink.contrib.django",  # checks, `manage.py freshlink`, the settings-change hook
    "examples.django_lending.loans",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "examples.django_lending.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
# Next to the example (gitignored): each checkout has its own.
DATABASE = os.environ.get(
    "LENDING_DATABASE", os.path.join(os.path.dirname(__file__), "lending.sqlite3")
)
if DATABASE.startswith("postgres"):  # postgresql://user[:password]@host:port/name
    _url = urllib.parse.urlsplit(DATABASE)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "PASSWORD": _url.password or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATABASE,
            "OPTIONS": {"timeout": 10},  # two server processes may write the same file
        }
    }
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# memory:// by default (one process); FRESHLINK_URL=redis://... shares it between processes.
FRESHLINK = {
    "URL": os.environ.get("FRESHLINK_URL", "memory://"),
    "NAMESPACE": "lending-django",
    "DEFAULT_TTL": 300,
    # Each renewal's invalidation is also written to the outbox table in its transaction: a
    # process that dies right after the commit leaves it for `freshlink relay` (README).
    "OUTBOX": True,
}

LINK_LIFETIME = 15 * 60  # seconds a renewed payment link stays valid
