"""The schema as the grammar enforces it: a small tree ``protocol.json_schema`` reads a JSON
Schema into (checked in the gateway) and ``engines.schema_gbnf`` renders as GBNF (in the
engine). Each node says exactly what may be written; nothing in it is left to interpret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from modelgrid.protocol.schema_pattern import Node as Pattern


@dataclass(frozen=True, slots=True)
class AnyValue:
    """Any JSON value."""


@dataclass(frozen=True, slots=True)
class Null:
    pass


@dataclass(frozen=True, slots=True)
class Boolean:
    pass


@dataclass(frozen=True, slots=True)
class Literals:
    """One of these JSON values (``enum``, ``const``), each as its JSON text."""

    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Integer:
    """An integer in [``lo``, ``hi``] (``None``: unbounded on that side)."""

    lo: int | None = None
    hi: int | None = None


@dataclass(frozen=True, slots=True)
class Number:
    """A number between ``lo`` and ``hi`` (``None``: unbounded), each end open or closed."""

    lo: Decimal | None = None
    lo_open: bool = False
    hi: Decimal | None = None
    hi_open: bool = False


@dataclass(frozen=True, slots=True)
class String:
    """A string of ``min_length``..``max_length`` characters, or matching ``pattern``, or in
    ``format`` (at most one of the three kinds of constraint)."""

    min_length: int = 0
    max_length: int | None = None
    pattern: Pattern | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Array:
    """``min_items``..``max_items`` items, each matching ``items``."""

    items: Node
    min_items: int = 0
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class Tuple:
    """Exactly these items, in order (``prefixItems``)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    schema: Node
    required: bool


@dataclass(frozen=True, slots=True)
class Object:
    """The declared ``properties`` in order (the optional ones may be left out); with none
    declared, any keys whose values match ``additional`` (``None``: the empty object only)."""

    properties: tuple[Property, ...] = ()
    additional: Node | None = None


@dataclass(frozen=True, slots=True)
class Union:
    """A value matching any of the options."""

    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Ref:
    """The schema ``Schema.defs[name]`` (how recursive schemas stay finite)."""

    name: str


Node = (
    AnyValue
    | Null
    | Boolean
    | Literals
    | Integer
    | Number
    | String
    | Array
    | Tuple
    | Object
    | Union
    | Ref
)


@dataclass(frozen=True, slots=True)
class Schema:
    """An enforceable schema: its root and the referenced schemas, by name."""

    root: Node
    defs: Mapping[str, Node] = field(default_factory=dict)


__all__ = [
    "AnyValue",
    "Array",
    "Boolean",
    "Integer",
    "Literals",
    "Node",
    "Null",
    "Number",
    "Object",
    "Property",
    "Ref",
    "Schema",
    "String",
    "Tuple",
    "Union",
]
