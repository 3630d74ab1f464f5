"""Serializers, payload signing and the codec that turns cached values into bytes and back.

Three serializers ship with freshlink:

* :class:`JsonSerializer` (``"json"``, the default): plain JSON for plain data, and tagged
  objects for the Python types JSON lacks, so a value comes back with its exact types.
* :class:`MsgpackSerializer` (``"msgpack"``, needs ``freshlink[msgpack]``): the same types in a
  more compact binary form.
* :class:`PickleSerializer` (``"pickle"``): anything picklable, but only together with a secret,
  because unpickling bytes an attacker wrote runs the attacker's code.

The JSON and msgpack serializers round-trip exactly these types, and refuse anything else with
:class:`~freshlink.errors.SerializationError` rather than returning a look-alike:
``None``, ``bool``, ``int``, ``float`` (NaN and infinities too), ``str``, ``bytes``, ``list``,
``tuple``, ``dict`` (any hashable supported keys), ``set``, ``frozenset``, ``Decimal``,
dataclasses and pydantic models (see below),
``datetime`` (naive or aware; an aware one comes back with a fixed-offset ``timezone`` of the same
UTC offset), ``date``, ``time``, ``timedelta`` and ``UUID``. Types are matched exactly: a subclass
(an ``IntEnum``, a ``namedtuple``, an ``OrderedDict``) would come back as its base class, so it is
refused too. (One exception: msgpack itself packs ``bytearray`` and ``memoryview`` as binary,
so with the msgpack serializer they come back as ``bytes``.)

Dataclass and pydantic model instances are stored as their type's ``module:qualname`` and their
fields, and come back as the same type with the same field values (neither ``__init__`` nor
validators run again). Decoding only finds a type that is registered with
:func:`register_type` or defined in a module this process has already imported, never imports
one a payload names; a class defined inside a function, a dataclass with attributes that are
not fields and a model with private attributes are refused.

A :class:`Signer` prepends an HMAC-SHA256 of the body and a caller-chosen *context* (freshlink
uses the cache key and its generations), and a :class:`Codec` combines a serializer, an optional
signer and a size limit. :func:`make_codec` builds one from the options ``Cache`` accepts.

Each of these lives in a private module of this package; import them from here.
"""

from __future__ import annotations

from ._base import Serializer
from ._codec import Codec, make_codec
from ._json import JsonSerializer
from ._msgpack import MsgpackSerializer
from ._objects import register_type
from ._pickle import PickleSerializer
from ._signer import Signer

__all__ = [
    "Codec",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "Signer",
    "make_codec",
    "register_type",
]
