"""Decoding a stored dataclass or pydantic model never goes beyond the type's own fields.

A payload is data an attacker with write access to Redis may have written: it must not set
attributes a dataclass does not declare, leave a required field out, or make the decoder run
code (a module's ``__getattr__``) while looking the type up.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pydantic
import pytest

from freshlink.errors import SerializationError
from freshlink.serializers import JsonSerializer, MsgpackSerializer, register_type

SERIALIZERS = [JsonSerializer(), MsgpackSerializer()]
IDS = ["json", "msgpack"]


@dataclass
class Account:
    owner: str
    limit: int = 10


@dataclass
class Forged:  # what an attacker writes: same name length as Account's registered name
    owner: str
    limit: int
    is_admin: bool


@dataclass
class Partial:
    limit: int


@dataclass
class Derived:
    owner: str
    label: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.label = self.owner.upper()


@dataclass
class _Hidden:
    x: int


class Outer:
    @dataclass
    class Inner:
        x: int


register_type(Account, "objtest.Acct")
register_type(Forged, "objtest.Frgd")
register_type(Partial, "objtest.Part")


def _retarget(serializer: Any, value: object, name: bytes, to: bytes) -> bytes:
    """``value`` encoded, then relabelled as the type registered under ``to``."""
    assert len(name) == len(to)  # keeps msgpack's ext length right
    data: bytes = serializer.dumps(value)
    assert data.count(name) == 1
    return data.replace(name, to)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
def test_a_payload_with_fields_the_dataclass_lacks_is_refused(serializer: Any) -> None:
    data = _retarget(serializer, Forged("eve", 1, True), b"objtest.Frgd", b"objtest.Acct")
    with pytest.raises(SerializationError, match=r"Account.*unknown fields \['is_admin'\]"):
        serializer.loads(data)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
def test_a_payload_missing_a_field_is_refused(serializer: Any) -> None:
    data = _retarget(serializer, Partial(5), b"objtest.Part", b"objtest.Acct")
    with pytest.raises(SerializationError, match=r"Account.*missing fields \['owner'\]"):
        serializer.loads(data)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
def test_exact_payloads_still_round_trip(serializer: Any) -> None:
    values = [Account("ada", 3), Derived("ada"), Outer.Inner(4)]
    back = serializer.loads(serializer.dumps(values))
    assert back == values
    assert [type(v) for v in back] == [Account, Derived, Outer.Inner]
    assert back[1].label == "ADA"  # an init=False field is a field: stored and restored


def test_looking_a_type_up_runs_no_module_getattr(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def lazy_getattr(name: str) -> Any:  # PEP 562: a lazy import would happen here
        asked.append(name)
        raise AttributeError(name)

    lazy = types.ModuleType("objtest_lazy")
    lazy.__getattr__ = lazy_getattr  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "objtest_lazy", lazy)
    data = _retarget(JsonSerializer(), Account("a"), b"objtest.Acct", b"objtest_lazy")
    for name in (b"objtest_lazy:Thing", b"objtest_lazy:Thing.Inner"):
        with pytest.raises(SerializationError, match="no such dataclass or pydantic model"):
            JsonSerializer().loads(data.replace(b"objtest_lazy", name))
    assert asked == []


def test_private_names_are_refused_both_ways() -> None:
    serializer = JsonSerializer()
    with pytest.raises(SerializationError, match=r"_Hidden.*private.*register_type"):
        serializer.dumps(_Hidden(1))
    data = serializer.dumps(Account("a")).replace(b"objtest.Acct", f"{__name__}:_Hidden".encode())
    with pytest.raises(SerializationError, match="no such dataclass or pydantic model"):
        serializer.loads(data)
    # The payload cannot reach a private attribute through a public class either.
    data = serializer.dumps(Account("a")).replace(b"objtest.Acct", f"{__name__}:Outer._x".encode())
    with pytest.raises(SerializationError, match="no such dataclass or pydantic model"):
        serializer.loads(data)


class Loan(pydantic.BaseModel):
    id: int
    note: str = "none"


class Open(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    id: int


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
def test_a_model_payload_must_hold_the_models_fields(serializer: Any) -> None:
    good = serializer.dumps(Loan(id=1))
    assert serializer.loads(good) == Loan(id=1)
    # pydantic's model_construct keeps unknown keys as attributes: a tampered payload would
    # add them; and it leaves a missing required field out without a word.
    forged = {"$fl": "obj", "t": f"{__name__}:Loan", "v": {"f": {"id": 1, "is_admin": 1}}}
    forged["v"]["s"] = ["id"]
    with pytest.raises(SerializationError, match=r"Loan.*unknown fields \['is_admin'\]"):
        JsonSerializer().loads(json.dumps(forged).encode())
    forged["v"] = {"f": {"note": "x"}, "s": ["note"]}
    with pytest.raises(SerializationError, match=r"Loan.*missing fields \['id'\]"):
        JsonSerializer().loads(json.dumps(forged).encode())
    forged["v"] = {"f": {"id": 2}, "s": ["id", "note"]}  # "set" names a field it lacks
    with pytest.raises(SerializationError, match=r"Loan.*missing fields \['note'\]"):
        JsonSerializer().loads(json.dumps(forged).encode())
    forged["v"] = {"f": {"id": 2}, "s": ["id"]}  # a field with a default may be absent
    assert JsonSerializer().loads(json.dumps(forged).encode()) == Loan(id=2)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
def test_a_model_that_allows_extra_keys_keeps_them(serializer: Any) -> None:
    value = Open(id=1, colour="red")
    back = serializer.loads(serializer.dumps(value))
    assert back == value
    assert back.model_extra == {"colour": "red"}
