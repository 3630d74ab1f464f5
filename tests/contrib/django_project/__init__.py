"""A minimal Django project for tests/contrib/test_django.py (set up with settings.configure())."""
