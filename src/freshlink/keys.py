"""Key templates, argument binding, stable argument hashing and tag rendering.

Everything here runs at decoration time (checking templates against the signature) or on the
slow path of a call (rendering a key the first time arguments are seen). The hot path of a hit
never renders a template: it looks the call up by a cheap *raw key* (see :meth:`KeySpec.raw_key`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import inspect
import string
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast
from urllib.parse import quote

from .errors import InvalidTagError, KeyEncodingError, KeyTemplateError

__all__ = [
    "MAX_KEY_LENGTH",
    "KeySpec",
    "Template",
    "check_tag",
    "check_version",
    "code_identity",
    "encode_arg",
    "safe_key",
]

#: Keys (and tags) longer than this are hashed before they reach a backend.
MAX_KEY_LENGTH = 200

# Characters allowed raw in a backend key. Everything else (whitespace, control characters,
# glob characters such as ``*?[]{}``, quotes, non-ASCII) makes the key hashed, so a key is
# always a short printable string that is safe to log, to type in redis-cli and to SCAN for.
_SAFE = frozenset(string.ascii_letters + string.digits + ":_.-@/=+,#%!~$&;<>|^")
# Inside a rendered placeholder value we percent-encode the separators too, so that
# ``"loan:{a}:{b}"`` with a="1:2", b="3" and a="1", b="2:3" give different keys.
_VALUE_SAFE = "-._~@+=,!$&;"

# Types whose equality implies equal canonical encoding, so a tuple of them (plus their exact
# types) can index the near cache directly. bool/int are told apart by the type part of the key;
# floats (-0.0 == 0.0), Decimals (1.0 == 1.00) and aware datetimes (equal instants in different
# zones) are excluded because equal values can still encode differently.
_ATOMIC: frozenset[type] = frozenset({str, int, bool, bytes, type(None), uuid.UUID})

# Subclasses of basic types (other than enums) encode as their base value plus the class name.
_BASES: tuple[tuple[type, Callable[[Any], object]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
    (tuple, lambda v: tuple.__getitem__(v, slice(None))),
    (list, lambda v: list.__getitem__(v, slice(None))),
    (dict, lambda v: dict(dict.items(v))),
)

_SELF_NAMES = frozenset({"self", "cls", "mcs"})


def _digest(data: str) -> str:
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def safe_key(key: str) -> str:
    """Return ``key`` unchanged if it is short and printable, else a stable hash of it."""
    if len(key) <= MAX_KEY_LENGTH and key[:1] != "#" and _SAFE.issuperset(key):
        return key
    return "#" + _digest(key)


def check_tag(tag: object) -> str:
    """Validate a tag given to ``invalidate()``; return it, or raise :class:`InvalidTagError`."""
    if not isinstance(tag, str):
        raise InvalidTagError(f"tags must be str, got {type(tag).__name__}: {tag!r}")
    if not tag:
        raise InvalidTagError("empty tag")
    if any(c.isspace() or not c.isprintable() for c in tag):
        raise InvalidTagError(f"tag {tag!r} contains whitespace or control characters")
    return tag


def encode_arg(value: object, _depth: int = 0) -> str:
    """Encode an argument into a canonical string: equal values give equal strings.

    Types are part of the encoding (``1``, ``1.0``, ``True`` and ``"1"`` all differ). Object
    addresses never appear: an object freshlink does not know raises :class:`KeyEncodingError`
    unless it defines ``__freshlink_key__()``.
    """
    if _depth > 50:
        raise KeyEncodingError("argument nested too deeply (cyclic?) to encode as a cache key")
    d = _depth + 1
    t = type(value)
    if value is None or t is bool or t is int:
        return repr(value)
    if t is str:
        return "s" + repr(value)
    if t is float:
        return "f" + repr(value)
    if t is bytes:
        return "b" + cast(bytes, value).hex()
    if t is Decimal:
        return "D" + str(value)
    if t is uuid.UUID:
        return "U" + str(value)
    if t is tuple or t is list:
        tag = "t" if t is tuple else "l"
        return tag + "[" + ",".join(encode_arg(v, d) for v in value) + "]"  # type: ignore[attr-defined]
    if t is dict:
        items = sorted(
            (encode_arg(k, d), encode_arg(v, d))
            for k, v in value.items()  # type: ignore[attr-defined]
        )
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if t is set or t is frozenset:
        return "S[" + ",".join(sorted(encode_arg(v, d) for v in value)) + "]"  # type: ignore[attr-defined]
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return t.__name__[:2] + value.isoformat()
    if isinstance(value, _dt.timedelta):
        return f"td{value.days},{value.seconds},{value.microseconds}"
    hook = getattr(t, "__freshlink_key__", None)
    if hook is not None and callable(hook):
        try:
            made = hook(value)
        except Exception as exc:
            raise KeyEncodingError(
                f"{t.__module__}.{t.__qualname__}.__freshlink_key__() raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return f"{t.__module__}.{t.__qualname__}=" + encode_arg(made, d)
    if isinstance(value, enum.Enum):
        return f"E{t.__module__}.{t.__qualname__}." + encode_arg(value.value, d)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f.name + "=" + encode_arg(getattr(value, f.name), d) for f in dataclasses.fields(value)
        )
        return f"dc{t.__module__}.{t.__qualname__}({fields})"
    # Subclasses of the basic types (IntEnum is handled above) encode as their base plus name.
    for base, convert in _BASES:
        if isinstance(value, base):
            return f"{t.__module__}.{t.__qualname__}~" + encode_arg(convert(value), d)
    raise KeyEncodingError(
        f"cannot build a cache key from an argument of type {t.__module__}.{t.__qualname__}; "
        "give the decorator a key= template, or define __freshlink_key__() on the type"
    )


def check_version(version: object) -> None:
    """``version=`` must be None, an int or a short str safe in a key (else KeyTemplateError)."""
    if version is not None and not (
        (isinstance(version, int) and not isinstance(version, bool))
        or (
            isinstance(version, str)
            and version
            and len(version) <= 64
            and _SAFE.issuperset(version)
            and "#" not in version
        )
    ):
        raise KeyTemplateError(
            f"version= must be an int or a short str of letters, digits and "
            f"punctuation without spaces; got {version!r}"
        )


def code_identity(func: Callable[..., Any]) -> str:
    """A short hash of a function's code, so a deploy that changes the code changes its keys."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None:
        return "nocode"
    h = hashlib.blake2b(digest_size=4)

    def feed(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            else:
                # repr of constants is stable (numbers, strings, tuples, None, frozensets of
                # those); nested code objects are fed recursively because their repr holds an
                # address that differs per process.
                h.update(repr(const).encode("utf-8", "surrogatepass"))

    feed(code)
    return h.hexdigest()


class _ValueFormatter(string.Formatter):
    """``str.format`` whose substituted values are percent-encoded (no ambiguous separators)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        t = type(value)
        if t not in _TEMPLATE_TYPES and not isinstance(value, enum.Enum):
            hook = getattr(t, "__freshlink_key__", None)
            if hook is not None and callable(hook):
                value = hook(value)
            else:
                for base, plain in _BASES[:3]:  # str, int, float subclasses: their base value
                    if isinstance(value, base):
                        value = plain(value)
                        break
                else:
                    raise KeyEncodingError(
                        f"a placeholder value of type {t.__module__}.{t.__qualname__} has no "
                        "stable text; use one of its attributes (e.g. {user.id}) or define "
                        "__freshlink_key__() on the type"
                    )
        return quote(format(value, format_spec), safe=_VALUE_SAFE, errors="surrogatepass")


_TEMPLATE_TYPES: frozenset[type] = frozenset(
    {
        str,
        int,
        bool,
        float,
        bytes,
        type(None),
        Decimal,
        uuid.UUID,
        _dt.datetime,
        _dt.date,
        _dt.time,
        _dt.timedelta,
    }
)
_FORMATTER = _ValueFormatter()


class Template:
    """A ``str.format``-style template such as ``"loan:{loan_id}"`` or ``"user:{user.id}"``."""

    __slots__ = ("fields", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise KeyTemplateError(f"a key or tag template must be a non-empty str, got {text!r}")
        self.text = text
        fields: list[str] = []
        try:
            for _literal, field, _spec, _conv in _FORMATTER.parse(text):
                if field is None:
                    continue
                if field == "" or field[0].isdigit():
                    raise KeyTemplateError(
                        f"template {text!r}: positional placeholder {{{field}}}; "
                        "name the parameter, e.g. {loan_id}"
                    )
                root = field.split(".", 1)[0].split("[", 1)[0]
                fields.append(root)
        except ValueError as exc:
            if isinstance(exc, KeyTemplateError):
                raise
            raise KeyTemplateError(f"template {text!r} is malformed: {exc}") from None
        self.fields = tuple(dict.fromkeys(fields))

    def render(self, values: Mapping[str, Any]) -> str:
        """Render with ``values``; a placeholder that fails to format raises KeyEncodingError."""
        try:
            return _FORMATTER.vformat(self.text, (), values)
        except Exception as exc:  # attribute errors, __format__ raising, bad format specs
            raise KeyEncodingError(
                f"cannot render template {self.text!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _underlying(func: Any) -> Callable[..., Any]:
    if isinstance(func, classmethod | staticmethod):
        return func.__func__
    return func  # type: ignore[no-any-return]


class KeySpec:
    """Compiled key and tag rendering for one decorated function.

    Built at decoration time: every ``{placeholder}`` of the key and tag templates is checked
    against the signature then, so a typo fails at import, not on the first request.
    """

    __slots__ = (
        "_params",
        "first_is_self",
        "fixed_tags",
        "func_id",
        "key_template",
        "name",
        "sig",
        "tag_templates",
        "uses_self",
    )

    def __init__(
        self,
        func: Any,
        *,
        key: str | None,
        tags: Iterable[str],
        version: str | int | None,
        use_code_identity: bool = True,
    ) -> None:
        target = _underlying(func)
        try:
            self.sig = inspect.signature(target)
        except (TypeError, ValueError) as exc:
            raise KeyTemplateError(f"cannot read the signature of {func!r}: {exc}") from None
        self._params = self.sig.parameters
        names = list(self._params)
        self.first_is_self = bool(names) and (
            names[0] in _SELF_NAMES or isinstance(func, classmethod)
        )
        self.name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
        self.key_template = Template(key) if key is not None else None
        if isinstance(tags, str):
            raise KeyTemplateError(f"tags must be a list of templates, not the str {tags!r}")
        self.tag_templates = tuple(Template(t) for t in tags)
        for tpl in (self.key_template, *self.tag_templates):
            if tpl is None:
                continue
            unknown = [f for f in tpl.fields if f not in self._params]
            if unknown:
                raise KeyTemplateError(
                    f"template {tpl.text!r} of {self.name} names "
                    f"{', '.join(repr(u) for u in unknown)}, which is not a parameter of "
                    f"{self.name}{self.sig}"
                )
        # Tags without placeholders are rendered once here, not per call.
        self.fixed_tags = all(not t.fields for t in self.tag_templates)
        first = names[0] if self.first_is_self else None
        self.uses_self = first is not None and any(
            first in t.fields for t in (self.key_template, *self.tag_templates) if t is not None
        )
        check_version(version)
        parts = [self.name, "v" + str(version if version is not None else 0)]
        if use_code_identity:
            # Templates are part of the identity too: entries are compared to their tags by
            # position, so changing the tag list must change the keys.
            ident = code_identity(target) + "|" + "|".join(t.text for t in self.tag_templates)
            parts.append(_digest(ident)[:8])
        self.func_id = ":".join(parts)

    def bind(self, instance: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind a call canonically: positional, keyword and defaulted arguments look the same."""
        try:
            if self.first_is_self and instance is not None:
                ba = self.sig.bind(instance, *args, **kwargs)
            else:
                ba = self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        ba.apply_defaults()
        return ba.arguments

    def key_for(self, bound: Mapping[str, Any]) -> str:
        """The entry key (without namespace) for bound arguments."""
        if self.key_template is not None:
            rendered = self.key_template.render(bound)
            prefix = self.func_id + ":"
            if len(prefix) + len(rendered) <= MAX_KEY_LENGTH and _SAFE.issuperset(rendered):
                return prefix + rendered
            return prefix + "#" + _digest(rendered)
        items = list(bound.items())
        if self.first_is_self:
            items = items[1:]  # the default key ignores self/cls, like cachetools' methodkey
        enc = ",".join(f"{name}={encode_arg(value)}" for name, value in items)
        return self.func_id + ":" + _digest(enc)

    def tags_for(self, bound: Mapping[str, Any]) -> tuple[str, ...]:
        """The rendered tags for bound arguments."""
        return tuple(t.render(bound) for t in self.tag_templates)

    def raw_key(self, token: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A cheap hashable stand-in for the call, or None when the slow path must be taken.

        Equal raw keys must imply equal canonical keys, hence the exact types in the tuple and
        the restriction to :data:`_ATOMIC` types (see the comment there).
        """
        if kwargs:
            if not args and len(kwargs) == 1:
                ((name, v),) = kwargs.items()
                t = type(v)
                return (token, name, v, t) if t in _ATOMIC else None
            vals = tuple(kwargs.values())
            if not _ATOMIC.issuperset(map(type, args)) or not _ATOMIC.issuperset(map(type, vals)):
                return None
            return (
                token,
                args,
                tuple(kwargs),
                vals,
                tuple(map(type, args)),
                tuple(map(type, vals)),
            )
        n = len(args)
        if n == 1:
            a = args[0]
            t = type(a)
            return (token, a, t) if t in _ATOMIC else None
        if n == 0:
            return token
        ts = tuple(map(type, args))
        if not _ATOMIC.issuperset(ts):
            return None
        return (token, args, ts)
