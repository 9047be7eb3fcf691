"""JSON Schemas as modelgrid enforces them, for every protocol: checked in the gateway,
turned into a grammar in the engine.

A structured-output schema (OpenAI's ``response_format`` / Responses ``text.format``,
DashScope's ``parameters.response_format``) or the ``parameters`` of a function whose call is
forced (``tool_choice`` ``required`` or named) constrains what the model may write: modelgrid's
own engine enforces it with a grammar while decoding. Every keyword is therefore either
enforced or refused with a 400 naming it and where it is, never accepted and ignored
(https://json-schema.org/draft/2020-12/json-schema-validation for what each one means; the
table with the reasons is docs/structured-outputs.md):

- enforced: ``type``, ``enum``, ``const``, ``properties``, ``required``,
  ``additionalProperties``, ``items``, ``prefixItems``, ``minItems``, ``maxItems``,
  ``minLength``, ``maxLength``, ``pattern`` (``schema_pattern``), ``format`` (``date``,
  ``time``, ``date-time``, ``uuid``), ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum`` (integers and numbers with fractions alike), ``anyOf``, ``oneOf``
  (as ``anyOf``: the grammar lets the model write a value of any branch), ``allOf`` of one
  schema, ``$ref`` into the schema (``#/$defs/…``, ``#/definitions/…``, ``#``);
- annotations, accepted: ``title``, ``description``, ``default``, ``examples``, ``$schema``,
  ``$id``, ``$comment``, ``deprecated``, ``readOnly``, ``writeOnly``, ``discriminator``,
  ``contentEncoding``, ``contentMediaType`` and ``x-…`` extensions;
- refused (``UnsupportedParameterError``): every other keyword (``multipleOf``,
  ``uniqueItems``, ``not``, ``if``, ``patternProperties``, ``minProperties``…), a keyword
  that does not apply to the schema's ``type``, and combinations the grammar does not combine
  (keywords beside ``$ref``/``anyOf``, ``pattern`` with ``minLength``…).

Where a schema allows more than the grammar writes, the grammar writes a subset, always
valid: no properties beyond the declared ones (unless the object declares none), integers
of at most 16 digits and numbers with at most 15 decimals where no bound says otherwise, no
exponent on a bounded number, ``prefixItems`` arrays at their full length.

``check_schema`` only checks the structure (for schemas that are shown to the model, not
enforced: the tools of ``tool_choice: auto``). Nothing here imports an engine: the gateway
refuses a schema before it picks a replica; ``engines.schema_gbnf`` renders the ``Schema``
(its nodes: ``schema_nodes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from modelgrid.core.errors import InvalidRequestError, UnsupportedParameterError
from modelgrid.core.types import Tool, ToolChoice, ToolChoiceMode
from modelgrid.protocol.schema_nodes import (
    AnyValue,
    Array,
    Boolean,
    Integer,
    Literals,
    Node,
    Null,
    Number,
    Object,
    Property,
    Ref,
    Schema,
    String,
    Tuple,
    Union,
)
from modelgrid.protocol.schema_pattern import Node as Pattern
from modelgrid.protocol.schema_pattern import PatternError, complement, parse_pattern
from modelgrid.protocol.schema_pattern import restrict as restrict_pattern
from modelgrid.protocol.schema_structure import schema_problem

MAX_SCHEMA_BOUND = (
    1000  # counts (minLength, maxItems…) above this are refused: grammars unroll them
)
MAX_DEPTH = 64  # schemas nested deeper are refused
DEFAULT_DIGITS = 16  # the most integer digits written where no bound asks for more
MAX_BOUND_DIGITS = 30  # a bound that needs more digits than this is refused
FORMATS = frozenset({"date", "time", "date-time", "uuid"})

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",  # OpenAPI's hint beside oneOf (pydantic writes it); oneOf enforces
        "contentEncoding",  # annotations only in draft 2020-12
        "contentMediaType",
    }
)
_DEFINITIONS = frozenset({"$defs", "definitions"})
_NUMERIC = frozenset({"integer", "number"})
# keyword -> the types whose values it constrains
APPLIES: Mapping[str, frozenset[str]] = {
    "minimum": _NUMERIC,
    "maximum": _NUMERIC,
    "exclusiveMinimum": _NUMERIC,
    "exclusiveMaximum": _NUMERIC,
    "minLength": frozenset({"string"}),
    "maxLength": frozenset({"string"}),
    "pattern": frozenset({"string"}),
    "format": frozenset({"string"}),
    "items": frozenset({"array"}),
    "prefixItems": frozenset({"array"}),
    "minItems": frozenset({"array"}),
    "maxItems": frozenset({"array"}),
    "properties": frozenset({"object"}),
    "required": frozenset({"object"}),
    "additionalProperties": frozenset({"object"}),
}
_COMBINATORS = frozenset({"$ref", "anyOf", "oneOf", "allOf", "enum", "const", "type"})
ENFORCED = frozenset(APPLIES) | _COMBINATORS
REFUSED: Mapping[str, str] = {
    "multipleOf": "a grammar cannot check divisibility",
    "uniqueItems": "a grammar cannot compare one item with another",
    "contains": "a grammar cannot require some item to match",
    "minContains": "a grammar cannot count matching items",
    "maxContains": "a grammar cannot count matching items",
    "not": "a grammar cannot exclude what a schema matches",
    "if": "conditional schemas are not enforced",
    "then": "conditional schemas are not enforced",
    "else": "conditional schemas are not enforced",
    "patternProperties": "property names by pattern are not enforced",
    "propertyNames": "property-name schemas are not enforced",
    "minProperties": "property counts are not enforced",
    "maxProperties": "property counts are not enforced",
    "dependentRequired": "dependencies between properties are not enforced",
    "dependentSchemas": "dependencies between properties are not enforced",
    "dependencies": "dependencies between properties are not enforced",
    "unevaluatedProperties": "unevaluated properties are not tracked",
    "unevaluatedItems": "unevaluated items are not tracked",
    "additionalItems": "use prefixItems with items (draft 2020-12)",
    "contentSchema": "schemas of encoded content are not enforced",
    "$dynamicRef": "only '$ref' into the schema is resolved",
    "$dynamicAnchor": "only '$ref' into the schema is resolved",
    "$recursiveRef": "only '$ref' into the schema is resolved",
    "$recursiveAnchor": "only '$ref' into the schema is resolved",
    "$anchor": "only '$ref' by JSON pointer ('#/…') is resolved",
    "$vocabulary": "custom vocabularies are not supported",
    "nullable": 'an OpenAPI keyword: write "type": [..., "null"] instead',
}
# The characters a grammar writes in a JSON string: raw where JSON allows (no control
# characters, no DEL, no lone surrogates), '"' and '\' escaped.
PRODUCIBLE = complement(((0x00, 0x1F), (0x7F, 0x7F), (0xD800, 0xDFFF)))


_Bound = tuple[Decimal, bool]  # a bound's value, and whether it is exclusive
_LOWER = ("minimum", "exclusiveMinimum")
_UPPER = ("maximum", "exclusiveMaximum")


def _pointer(path: str, *parts: str | int) -> str:
    for p in parts:
        path += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return path


def _decimal(value: int | float) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _empty(low: _Bound, high: _Bound) -> bool:
    """Whether no number lies between the bounds."""
    return low[0] > high[0] or (low[0] == high[0] and (low[1] or high[1]))


def _json_type(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    return {
        "string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"
    }


class _Normalizer:
    def __init__(self, root: Any, param: str) -> None:
        self.root = root
        self.param = param
        self.names: dict[str, str] = {}
        self.defs: dict[str, Node] = {}

    def refuse(self, keyword: str, path: str, reason: str) -> UnsupportedParameterError:
        return UnsupportedParameterError(
            f"The JSON schema in '{self.param}' uses '{keyword}' (at "
            f"'{_pointer(path, keyword)}'), which this server cannot enforce: {reason}.",
            param=self.param,
        )

    def invalid(self, path: str, problem: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"The JSON schema in '{self.param}' cannot be satisfied at '{path or '/'}': {problem}.",
            param=self.param,
        )

    def node(self, schema: Any, path: str, depth: int = 0) -> Node:
        if depth > MAX_DEPTH:
            raise self.invalid(path, f"it is nested deeper than {MAX_DEPTH} levels")
        if schema is True:
            return AnyValue()
        if schema is False:
            raise self.invalid(path, "the schema false matches no value")
        for key in schema:
            if key in ANNOTATIONS or key in _DEFINITIONS or key.startswith("x-"):
                continue
            if key in REFUSED:
                raise self.refuse(key, path, REFUSED[key])
            if key not in ENFORCED:
                raise self.refuse(key, path, "it is not a JSON Schema keyword this server knows")
        active = [k for k in schema if k in ENFORCED]
        for head in ("$ref", "allOf", "anyOf", "oneOf"):
            if head in schema:
                others = [k for k in active if k != head]
                if others:
                    raise self.refuse(others[0], path, f"keywords beside '{head}' are not combined")
                return self.combined(head, schema[head], path, depth)
        if "enum" in schema or "const" in schema:
            return self.literals(schema, active, path)
        declared = schema.get("type")
        types = [declared] if isinstance(declared, str) else list(declared or [])
        if not types:  # no type: the types the keywords constrain
            types = sorted({t for k in active for t in APPLIES[k]} - {"integer"})
        for key in active:
            if key != "type" and not APPLIES[key] & set(types):
                kinds = " or ".join(sorted(APPLIES[key]))
                raise self.refuse(key, path, f"it applies to {kinds} values, not to {types}")
        if not types:
            return AnyValue()
        if "number" in types and "integer" in types:
            types.remove("integer")
        options = [self.typed(t, schema, path, depth) for t in dict.fromkeys(types)]
        return options[0] if len(options) == 1 else Union(tuple(options))

    def combined(self, head: str, value: Any, path: str, depth: int) -> Node:
        if head == "$ref":
            return self.ref(value, path, depth)
        if head == "allOf" and len(value) != 1:
            raise self.refuse("allOf", path, "only an allOf of a single schema is enforced")
        options = [self.node(s, _pointer(path, head, i), depth + 1) for i, s in enumerate(value)]
        if len(options) == 1:
            return options[0]
        flat: list[Node] = []
        for o in options:
            flat.extend(o.options if isinstance(o, Union) else (o,))
        return Union(tuple(flat))

    def ref(self, ref: str, path: str, depth: int) -> Node:
        if not ref.startswith("#"):
            raise self.refuse("$ref", path, "only references inside the schema ('#/…') resolve")
        if ref not in self.names:
            target: Any = self.root
            for part in ref[1:].split("/")[1:] if ref != "#" else []:
                key = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and key in target:
                    target = target[key]
                elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                    target = target[int(key)]
                else:
                    raise self.invalid(path, f"'$ref' {ref!r} points at nothing")
            if not isinstance(target, dict | bool):
                raise self.invalid(path, f"'$ref' {ref!r} does not point at a schema")
            name = f"def{len(self.names)}"
            self.names[ref] = name
            self.defs[name] = self.node(target, ref[1:], depth + 1)
        return Ref(self.names[ref])

    def literals(self, schema: Mapping[str, Any], active: list[str], path: str) -> Node:
        others = [k for k in active if k not in ("enum", "const", "type")]
        if others:
            raise self.refuse(
                others[0], path, "beside 'enum' or 'const' only 'type' is enforced: list the values"
            )
        if "enum" in schema and "const" in schema:
            raise self.refuse("const", path, "give either 'enum' or 'const'")
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        declared = schema.get("type")
        types = set([declared] if isinstance(declared, str) else declared or [])
        kept = [v for v in values if not types or _json_type(v) & types]
        if not kept:
            raise self.invalid(path, f"no value of 'enum'/'const' has the type {sorted(types)}")
        texts = (json.dumps(v, ensure_ascii=False) for v in kept)
        return Literals(tuple(dict.fromkeys(texts)))

    def typed(self, t: str, schema: Mapping[str, Any], path: str, depth: int) -> Node:
        if t == "null":
            return Null()
        if t == "boolean":
            return Boolean()
        if t == "integer":
            return self.integer(schema, path)
        if t == "number":
            return self.number(schema, path)
        if t == "string":
            return self.string(schema, path)
        if t == "array":
            return self.array(schema, path, depth)
        return self.object(schema, path, depth)

    def count(self, schema: Mapping[str, Any], key: str, path: str) -> int | None:
        value = schema.get(key)
        if isinstance(value, int) and value > MAX_SCHEMA_BOUND:
            raise self.refuse(
                key,
                path,
                f"{value} is larger than {MAX_SCHEMA_BOUND}, the most a grammar can enforce",
            )
        return value if isinstance(value, int) else None

    def bounds(self, schema: Mapping[str, Any]) -> tuple[_Bound | None, _Bound | None]:
        """The tightest lower and upper bound, each ``(value, open)``."""
        lows = [(_decimal(schema[k]), k[0] == "e") for k in _LOWER if k in schema]
        highs = [(_decimal(schema[k]), k[0] == "e") for k in _UPPER if k in schema]
        low = max(lows, default=None)  # at equal values the open bound is the tighter
        high = min(highs, key=lambda b: (b[0], not b[1]), default=None)
        return low, high

    def checked_digits(self, value: Decimal | int, key: str, path: str) -> None:
        if len(str(abs(int(value)))) > MAX_BOUND_DIGITS:
            raise self.refuse(
                key, path, f"bounds beyond {MAX_BOUND_DIGITS} digits are not enforced"
            )

    def integer(self, schema: Mapping[str, Any], path: str) -> Node:
        low, high = self.bounds(schema)
        lo = hi = None
        if low is not None:
            lo = int(
                low[0].to_integral_value(ROUND_FLOOR) + 1
                if low[1]
                else low[0].to_integral_value(ROUND_CEILING)
            )
        if high is not None:
            hi = int(
                high[0].to_integral_value(ROUND_CEILING) - 1
                if high[1]
                else high[0].to_integral_value(ROUND_FLOOR)
            )
        if lo is not None and hi is not None and lo > hi:
            raise self.invalid(path, "no integer lies between its minimum and its maximum")
        cap = 10**DEFAULT_DIGITS - 1
        if lo is not None and lo < -cap and (hi is None or hi >= -cap):
            lo = None  # the integers written (16 digits at most) are above it anyway
        if hi is not None and hi > cap and (lo is None or lo <= cap):
            hi = None
        for value, key in ((lo, "minimum"), (hi, "maximum")):
            if value is not None:
                self.checked_digits(value, key, path)
        return Integer(lo, hi)

    def number(self, schema: Mapping[str, Any], path: str) -> Node:
        low, high = self.bounds(schema)
        if low is not None and high is not None and _empty(low, high):
            raise self.invalid(path, "no number lies between its minimum and its maximum")
        cap = Decimal(10**DEFAULT_DIGITS)
        if low is not None and low[0] < -cap and (high is None or high[0] >= -cap):
            low = None
        if high is not None and high[0] > cap and (low is None or low[0] <= cap):
            high = None
        for bound, key in ((low, "minimum"), (high, "maximum")):
            if bound is not None:
                self.checked_digits(bound[0], key, path)
        return Number(
            low[0] if low else None,
            bool(low and low[1]),
            high[0] if high else None,
            bool(high and high[1]),
        )

    def string(self, schema: Mapping[str, Any], path: str) -> Node:
        lo = self.count(schema, "minLength", path) or 0
        hi = self.count(schema, "maxLength", path)
        if hi is not None and lo > hi:
            raise self.invalid(path, "minLength is larger than maxLength")
        pattern, fmt = schema.get("pattern"), schema.get("format")
        if pattern is not None and fmt is not None:
            raise self.refuse("format", path, "'pattern' and 'format' are not combined")
        if (pattern is not None or fmt is not None) and (
            "minLength" in schema or "maxLength" in schema
        ):
            key = "minLength" if "minLength" in schema else "maxLength"
            raise self.refuse(key, path, "lengths are not combined with 'pattern' or 'format'")
        if fmt is not None and fmt not in FORMATS:
            raise self.refuse("format", path, f"the format {fmt!r} is not one of {sorted(FORMATS)}")
        node: Pattern | None = None
        if pattern is not None:
            try:
                parsed = parse_pattern(pattern)
            except PatternError as exc:
                raise self.refuse("pattern", path, str(exc)) from None
            node = restrict_pattern(parsed, PRODUCIBLE)
            if node is None:
                raise self.invalid(path, f"only strings with control characters match /{pattern}/")
        return String(lo, hi, node, fmt)

    def array(self, schema: Mapping[str, Any], path: str, depth: int) -> Node:
        lo = self.count(schema, "minItems", path) or 0
        hi = self.count(schema, "maxItems", path)
        if "prefixItems" in schema:
            for key in ("minItems", "maxItems"):
                if key in schema:
                    raise self.refuse(key, path, "item counts are not combined with 'prefixItems'")
            if "items" in schema and schema["items"] is not False:
                self.node(schema["items"], _pointer(path, "items"), depth + 1)
            items = schema["prefixItems"]
            return Tuple(
                tuple(
                    self.node(s, _pointer(path, "prefixItems", i), depth + 1)
                    for i, s in enumerate(items)
                )
            )
        items = schema.get("items", True)
        if items is False:
            if lo > 0:
                raise self.invalid(path, "items is false, so no array has minItems items")
            return Tuple(())
        if hi is not None and lo > hi:
            raise self.invalid(path, "minItems is larger than maxItems")
        return Array(self.node(items, _pointer(path, "items"), depth + 1), lo, hi)

    def object(self, schema: Mapping[str, Any], path: str, depth: int) -> Node:
        declared = schema.get("properties", {})
        required = list(dict.fromkeys(schema.get("required", [])))
        extra = schema.get("additionalProperties", True)
        extra_node = (
            None
            if extra is False
            else self.node(extra, _pointer(path, "additionalProperties"), depth + 1)
        )
        props = [
            Property(
                name,
                self.node(sub, _pointer(path, "properties", name), depth + 1),
                name in required,
            )
            for name, sub in declared.items()
        ]
        for name in required:
            if name not in declared:
                if extra_node is None:
                    raise self.invalid(
                        path,
                        f"'{name}' is required, not declared, and additionalProperties is false",
                    )
                props.append(Property(name, extra_node, True))
        if props:
            return Object(tuple(props))
        return Object((), extra_node)


def _heads(node: Node) -> set[str]:
    """The definitions ``node`` may start with before writing any character."""
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, Union):
        return set().union(*(_heads(o) for o in node.options))
    return set()


def _check_cycles(norm: _Normalizer) -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str) -> None:
        state[name] = 1
        for nxt in _heads(norm.defs[name]):
            if state.get(nxt) == 1:
                ref = next(r for r, n in norm.names.items() if n == nxt)
                raise norm.invalid(
                    ref[1:], f"'$ref' {ref!r} refers back to itself before any value"
                )
            if nxt not in state:
                visit(nxt)
        state[name] = 2

    for name in list(norm.defs):
        if name not in state:
            visit(name)


def check_schema(schema: Any, param: str) -> None:
    """Raise unless ``schema`` is a structurally valid JSON Schema (wrong keyword types,
    unknown ``type`` names, malformed ``pattern`` …); nothing about enforcement.

    Raises:
        InvalidRequestError: with ``param`` and the first problem found.
    """
    if (found := schema_problem(schema)) is not None:
        raise InvalidRequestError(f"Invalid JSON schema in '{param}': {found}.", param=param)


def enforceable_schema(schema: Any, param: str) -> Schema:
    """``schema`` as the grammar enforces it.

    Args:
        schema: A JSON Schema (a JSON object or a boolean), as sent.
        param: The request parameter holding it, named in errors.

    Raises:
        InvalidRequestError: a malformed schema, or one no value satisfies (``param``).
        UnsupportedParameterError: a keyword or combination the grammar cannot enforce; the
            message names the keyword and its JSON pointer in the schema (``param``).
    """
    check_schema(schema, param)
    norm = _Normalizer(schema, param)
    root = norm.node(schema, "")
    _check_cycles(norm)
    return Schema(root, norm.defs)


def check_forced_tools(
    tools: Sequence[Tool], choice: ToolChoice | None, param_of: Callable[[int], str]
) -> None:
    """Check the ``parameters`` of the functions a grammar will force (``required``: every
    tool; a named function: that one) with ``enforceable_schema``; ``param_of(i)`` names the
    ``i``-th tool's schema in the caller's wire format (``tools[0].function.parameters``).

    Raises:
        InvalidRequestError, UnsupportedParameterError: as ``enforceable_schema``.
    """
    mode = choice.mode if choice is not None and tools else ToolChoiceMode.NONE
    for i, tool in enumerate(tools):
        forced = mode is ToolChoiceMode.REQUIRED or (
            mode is ToolChoiceMode.FUNCTION and choice is not None and tool.name == choice.name
        )
        if forced and tool.parameters is not None:
            enforceable_schema(tool.parameters, param_of(i))


__all__ = [
    "ANNOTATIONS",
    "ENFORCED",
    "FORMATS",
    "MAX_SCHEMA_BOUND",
    "PRODUCIBLE",
    "REFUSED",
    "Schema",
    "check_forced_tools",
    "check_schema",
    "enforceable_schema",
]
