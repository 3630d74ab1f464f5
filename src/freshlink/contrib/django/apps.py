"""The Django app config: registers the system checks and the settings-change hook."""

from __future__ import annotations

from django.apps import AppConfig


class FreshlinkConfig(AppConfig):  # type: ignore[misc]
    """``freshlink.contrib.django``: system checks, ``manage.py freshlink``, settings reload."""

    name = "freshlink.contrib.django"
    label = "freshlink"
    verbose_name = "freshlink"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        """Register the checks and rebuild the cache whenever ``FRESHLINK`` changes."""
        from django.core import checks
        from django.core.signals import setting_changed

        from .checks import check_reachable, check_settings
        from .receivers import on_setting_changed

        checks.register(check_settings, "freshlink")
        checks.register(check_reachable, "freshlink", deploy=True)
        setting_changed.connect(on_setting_changed, dispatch_uid="freshlink.setting_changed")
