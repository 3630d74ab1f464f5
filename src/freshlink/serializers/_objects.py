"""Dataclasses and pydantic models as cached values: described on encode, rebuilt on decode.

A value is stored as its type's name (``module:qualname``) and its fields; the fields go
through the serializer like any other value, so a nested model or a ``Decimal`` field comes
back exactly. Decoding never imports a module named by a payload: the type is found among the
types registered with :func:`register_type`, or else in a module this process has already
imported, and only if it is a dataclass or a pydantic model. Anything else is refused with a
:class:`~freshlink.errors.SerializationError` that names the type.

pydantic is never imported here: a value is a pydantic model only if pydantic is already in
``sys.modules`` (the app imported it to build the model).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
from collections.abc import Iterable
from typing import Any, Final

from freshlink.errors import ConfigurationError, SerializationError

__all__ = ["build_object", "describe_object", "register_type"]

_registry: dict[str, type] = {}
_names: dict[type, str] = {}
_lock = threading.Lock()

#: The tag (JSON) of a stored dataclass or pydantic model.
OBJECT_TAG: Final = "obj"


def _pydantic_base() -> type | None:
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None) if module is not None else None
    return base if isinstance(base, type) else None


def _is_model(cls: type) -> bool:
    base = _pydantic_base()
    return base is not None and issubclass(cls, base) and hasattr(cls, "model_construct")


def _kind(cls: type) -> str | None:
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if _is_model(cls):
        return "pydantic"
    return None


def register_type(cls: type, name: str | None = None) -> type:
    """Let ``cls`` (a dataclass or pydantic model) be cached under ``name``; usable as decorator.

    Registering is optional for a module-level class (it is found by ``module:qualname``); it
    is needed for a class defined inside a function, or to keep old entries readable after a
    class moves (register it under its old name).
    """
    if not isinstance(cls, type) or _kind(cls) is None:
        raise ConfigurationError(
            f"register_type() takes a dataclass or a pydantic model class, got {cls!r}"
        )
    key = name if name is not None else f"{cls.__module__}:{cls.__qualname__}"
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"register_type(): name must be a non-empty str, got {name!r}")
    with _lock:
        other = _registry.get(key)
        if other is not None and other is not cls:
            raise ConfigurationError(
                f"register_type(): the name {key!r} is already taken by {other!r}"
            )
        _registry[key] = cls
        _names.setdefault(cls, key)
    return cls


def _refuse(value: object, serializer: str, why: str) -> SerializationError:
    cls = type(value)
    return SerializationError(
        f"cannot serialize value of type {cls.__module__}.{cls.__qualname__} with the "
        f"{serializer} serializer: {why}"
    )


def describe_object(value: object, serializer: str) -> tuple[str, dict[str, Any]] | None:
    """The stored name and fields of a dataclass or pydantic model; None for other values.

    Raises SerializationError for one that could not be rebuilt exactly.
    """
    cls = type(value)
    kind = _kind(cls)
    if kind is None:
        return None
    name = _names.get(cls)
    if name is None:
        if "<locals>" in cls.__qualname__:
            raise _refuse(
                value,
                serializer,
                "it is defined inside a function, so no other process can find it; define it "
                "at module level or register it: freshlink.serializers.register_type(cls, name)",
            )
        if any(part.startswith("_") for part in cls.__qualname__.split(".")):
            raise _refuse(
                value,
                serializer,
                "its name is private, and a decoder never looks up a private name; register "
                "it: freshlink.serializers.register_type(cls, name)",
            )
        name = f"{cls.__module__}:{cls.__qualname__}"
    if kind == "dataclass":
        names = [f.name for f in dataclasses.fields(value)]  # type: ignore[arg-type]
        extra = set(getattr(value, "__dict__", {})) - set(names)
        if extra:
            # Attributes outside the fields (set in __post_init__, say) would be lost.
            raise _refuse(
                value, serializer, f"it has attributes that are not fields: {sorted(extra)}"
            )
        return name, {n: getattr(value, n) for n in names}
    private = getattr(value, "__pydantic_private__", None)
    if private:
        raise _refuse(value, serializer, f"it has private attributes {sorted(private)}")
    fields = dict(value.__dict__)
    extra_fields = getattr(value, "__pydantic_extra__", None) or {}
    fields.update(extra_fields)
    # The fields the caller set, so model_dump(exclude_unset=True) is the same after a hit.
    return name, {"f": fields, "s": sorted(value.model_fields_set)}  # type: ignore[attr-defined]


def _unknown(name: str) -> SerializationError:
    return SerializationError(
        f"cannot decode a cached {name!r}: no such dataclass or pydantic model is "
        f"registered or imported in this process (import its module first, or "
        f"freshlink.serializers.register_type(cls, {name!r}))"
    )


def _find(name: str) -> type:
    cls = _registry.get(name)
    if cls is not None:
        return cls
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)  # never an import: a payload names no code to run
    if not isinstance(module, types.ModuleType) or not qualname:
        raise _unknown(name)
    found: Any = module
    for part in qualname.split("."):
        # Read from the namespace itself: getattr would run a module's __getattr__ (a lazy
        # import) or a class's descriptors. A private name is never a cached type's path.
        namespace = vars(found) if isinstance(found, types.ModuleType | type) else {}
        if part.startswith("_") or part not in namespace:
            raise _unknown(name)
        found = namespace[part]
    if not isinstance(found, type) or _kind(found) is None:
        raise _unknown(name)
    return found


def _mismatch(cls: type, missing: list[str], unknown: Iterable[object]) -> SerializationError:
    pairs = (("missing", missing), ("unknown", sorted(map(str, unknown))))
    why = "; ".join(f"{what} fields {names}" for what, names in pairs if names)
    return SerializationError(
        f"cannot decode a cached {cls.__module__}.{cls.__qualname__}: {why} (a tampered "
        f"payload, or the class changed since the value was stored)"
    )


def _build_dataclass(cls: type, payload: dict[Any, Any]) -> object:
    names = {f.name for f in dataclasses.fields(cls)}
    if set(payload) != names:
        raise _mismatch(cls, sorted(names - set(payload)), set(payload) - names)
    # Set the fields as they were, without __init__/__post_init__: a post-init that derives
    # or normalises a field would otherwise change the value on every hit.
    obj: Any = object.__new__(cls)
    for key, value in payload.items():
        object.__setattr__(obj, key, value)
    return obj


def _build_model(cls: Any, payload: object) -> object:
    fields = payload.get("f") if isinstance(payload, dict) else None
    given = payload.get("s") if isinstance(payload, dict) else None
    if not isinstance(fields, dict) or not isinstance(given, list):
        raise TypeError("malformed pydantic model payload")
    declared: dict[str, Any] = cls.model_fields
    if cls.model_config.get("extra") != "allow":
        # model_construct would keep unknown keys as attributes; only extra="allow" has any.
        unknown = set(fields) - set(declared)
        if unknown:
            raise _mismatch(cls, [], unknown)
    missing = [n for n, f in declared.items() if f.is_required() and n not in fields]
    missing += sorted(map(str, set(given) - set(fields) - set(missing)))  # "set" but absent
    if missing:
        raise _mismatch(cls, missing, ())
    # model_construct: no validation, so the value is what was stored (validators ran once,
    # when the model was first built).
    return cls.model_construct(_fields_set=set(given), **fields)


def build_object(name: object, payload: object) -> object:
    """Rebuild the value :func:`describe_object` described (fields already decoded).

    The payload must hold exactly the fields of the type it names: a tampered one cannot set
    other attributes or leave a required field out.
    """
    if not isinstance(name, str) or not isinstance(payload, dict):
        raise TypeError("malformed object payload")
    cls = _find(name)
    if _kind(cls) == "dataclass":
        return _build_dataclass(cls, payload)
    return _build_model(cls, payload)
