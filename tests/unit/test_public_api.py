"""The public surface is curated and importing freshlink stays light."""

from __future__ import annotations

import subprocess
import sys

import freshlink

EXPECTED = {
    "AsyncCached",
    "BackendError",
    "Cache",
    "Cached",
    "ConfigurationError",
    "Event",
    "FreshlinkError",
    "InvalidTagError",
    "InvalidationError",
    "KeyEncodingError",
    "KeyTemplateError",
    "Local",
    "MissingDependencyError",
    "RemoteLoaderError",
    "SerializationError",
    "TamperedPayloadError",
    "ValueTooLargeError",
    "__version__",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(freshlink.__all__) == EXPECTED
    assert freshlink.__all__ == sorted(freshlink.__all__, key=lambda n: (n.startswith("_"), n))
    for name in freshlink.__all__:
        assert hasattr(freshlink, name), name


def test_public_names_have_docstrings() -> None:
    for name in freshlink.__all__:
        obj = getattr(freshlink, name)
        if name != "__version__":
            assert (obj.__doc__ or "").strip(), f"{name} lacks a docstring"


def test_import_loads_no_framework_or_driver() -> None:
    # Nor asyncio: about a third of the import time, loaded only where async code runs. (Some
    # wrapt releases, 2.5 for one, import asyncio themselves: then only what freshlink adds.)
    code = (
        "import sys, cachetools, wrapt\n"
        "theirs = set(sys.modules)\n"
        "import freshlink\n"
        "c = freshlink.Cache()\n"
        # An unsupported value asks whether it is a pydantic model: without importing pydantic.
        "try: c.set('k', object())\n"
        "except freshlink.SerializationError: pass\n"
        "bad = [m for m in ('flask', 'django', 'redis', 'prometheus_client', 'msgpack',"
        " 'asyncio', 'fastapi', 'starlette', 'pydantic', 'opentelemetry')"
        " if m in sys.modules and m not in theirs]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_loads_no_submodule() -> None:
    # Every `import freshlink.<module>` runs freshlink/__init__ first (the pytest plugin's
    # included): the public names are imported on first use.
    code = "import sys, freshlink\nprint(sorted(m for m in sys.modules if 'freshlink' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['freshlink']"
    assert {"Cache", "Local", "__version__"} <= set(dir(freshlink))


def test_submodules_are_attributes_after_a_bare_import() -> None:
    # `except freshlink.errors.InvalidationError:` is evaluated only when something raises:
    # it must work after `import freshlink` alone, as it did before the names were lazy.
    code = (
        "import freshlink\n"
        "print(freshlink.errors.InvalidationError.__name__,"
        " freshlink.serializers.register_type.__name__)\n"
        "try:\n    freshlink.no_such_module\nexcept AttributeError:\n    print('refused')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["InvalidationError", "register_type", "refused"]


def test_errors_pair_with_builtins() -> None:
    assert issubclass(freshlink.KeyTemplateError, ValueError)
    assert issubclass(freshlink.KeyEncodingError, TypeError)
    assert issubclass(freshlink.SerializationError, TypeError)
    assert issubclass(freshlink.ConfigurationError, ValueError)
    assert issubclass(freshlink.InvalidationError, ConnectionError)
    assert issubclass(freshlink.MissingDependencyError, ImportError)
    for name in freshlink.__all__:
        obj = getattr(freshlink, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, freshlink.FreshlinkError)
