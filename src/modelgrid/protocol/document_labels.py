"""Knowledge-base documents' ``metadata`` and ``tags``, and the filters over them (pure).

A document's ``metadata`` follows the rules of a vector-store file's ``attributes``
(``protocol.openai.attribute_filters.check_attributes``): an object of at most 16 keys of
1..64 characters, each value a string of at most 512 characters, a number or a boolean; and,
as every name people give (``protocol.text``), no control character in a key, nor in a string
value other than TAB, LF and CR (a value may be prose). Its ``tags``: a list of strings of
1..``TAG_MAX_CHARS`` characters with no control character (``protocol.text.label``), kept in
order with repeats dropped, at most ``MAX_TAGS`` once they are (a repeat is not counted).

The filters are DashScope's Application API ``parameters.rag_options.metadata_filter`` and
``tags``. The parameter table of Alibaba Cloud's "Parameters passed to Alibaba Cloud Model
Studio" (https://www.alibabacloud.com/help/en/ims/user-guide/parameters-of-bailian-application-center,
which points to the Application API reference) says: with ``metadata_filter`` "documents that
contain the metadata are retrieved", with ``tags`` "unstructured documents that contain the
tags are retrieved". So here a document passes ``metadata_filter`` when its metadata has every
key of the filter with an equal value (a boolean equals only a boolean; ``1`` equals ``1.0``),
and passes ``tags`` when it carries every tag listed (the reference does not say "any";
"contain the tags" is read as all of them, so each tag narrows, as each metadata key does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.openai.attribute_filters import (
    Comparison,
    Scalar,
    check_attributes,
    matches,
)
from modelgrid.protocol.text import label, prose

MAX_TAGS = 20
TAG_MAX_CHARS = 64


def check_metadata(raw: Any, param: str = "metadata") -> dict[str, Scalar] | None:
    """A document's ``metadata`` (or a ``metadata_filter``) checked; ``None`` and ``{}`` are
    ``None``.

    Raises:
        InvalidRequestError: not an object, over 16 keys, a key not 1..64 characters or
            holding a control character (``param``), a value not a string (at most 512
            characters, no control character but TAB, LF, CR), number or boolean
            (``param.<key>``).
    """
    checked = check_attributes(raw, param)
    for key, value in (checked or {}).items():
        try:
            label(key)
        except ValueError as e:
            raise InvalidRequestError(f"'{param}' keys {e}.", param=param) from None
        if isinstance(value, str):
            try:
                prose(value)
            except ValueError as e:
                raise InvalidRequestError(f"'{param}.{key}' {e}.", param=f"{param}.{key}") from None
    return checked or None


def check_tags(raw: Any, param: str = "tags") -> list[str] | None:
    """``tags`` checked, in order, repeats dropped; ``None`` and ``[]`` are ``None``.

    Raises:
        InvalidRequestError: not a list, an item not a string of 1..``TAG_MAX_CHARS``
            characters or holding a control character, over ``MAX_TAGS`` different tags
            (counted once repeats are dropped) (``param``).
    """
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequestError(f"'{param}' must be an array of strings.", param=param)
    for n, tag in enumerate(raw):
        if not isinstance(tag, str) or not 1 <= len(tag) <= TAG_MAX_CHARS:
            raise InvalidRequestError(
                f"'{param}[{n}]' must be a string of 1..{TAG_MAX_CHARS} characters.", param=param
            )
        try:
            label(tag)
        except ValueError as e:
            raise InvalidRequestError(f"'{param}[{n}]' {e}.", param=param) from None
    tags = list(dict.fromkeys(raw))  # repeats dropped first: 21 copies of one tag are 1 tag
    if len(tags) > MAX_TAGS:
        raise InvalidRequestError(
            f"'{param}' has {len(tags)} different tags; at most {MAX_TAGS}.", param=param
        )
    return tags or None


def passes(
    metadata_filter: Mapping[str, Scalar] | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    carried: Sequence[str] | None,
) -> bool:
    """Whether a document with ``metadata`` and ``carried`` tags passes both filters (a
    ``None`` filter passes everything; see the module docstring)."""
    if metadata_filter and not all(
        matches(Comparison("eq", key, value), metadata) for key, value in metadata_filter.items()
    ):
        return False
    return not tags or set(tags) <= set(carried or ())


__all__ = ["MAX_TAGS", "TAG_MAX_CHARS", "check_metadata", "check_tags", "passes"]
