"""Settings of the test project; test_django.py passes the upper-case names to configure()."""

SECRET_KEY = "freshlink-tests-only"
DEBUG = False
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "freshlink.contrib.django",
    "django_project.lending",
]
# Sessions in signed cookies: the cached-view tests log users in without a session table.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
FRESHLINK = {"URL": "memory://", "NAMESPACE": "djtests"}
