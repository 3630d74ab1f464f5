"""Settings of the test project; test_django.py passes the upper-case names to configure()."""

SECRET_KEY = "freshlink-tests-only"
DEBUG = False
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = ["freshlink.contrib.django", "django_project.lending"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
FRESHLINK = {"URL": "memory://", "NAMESPACE": "djtests"}
