"""Text that people give the objects they name: no control characters.

A name or description is shown back in tables, terminals and web pages (``modelgrid
knowledge list``, the console); a control character there (NUL, ESC starting a terminal
escape sequence, a backspace) prints garbage or hides text, and PostgreSQL stores no NUL at
all. So these fields refuse the C0 controls (U+0000..U+001F), DEL (U+007F) and the C1
controls (U+0080..U+009F), Unicode's category ``Cc``, with a 400 naming the field, the first
such character's code point and its position counted from 1 as a person reads it (a TAB after
one letter is "at character 2"). A description is prose and may hold tabs and line breaks
(TAB, LF, CR); a name may not.

``Label`` (names) and ``Prose`` (descriptions) are ``str`` types for pydantic models; the
length bounds stay with each field (``Annotated[Label, Field(max_length=200)]``).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROSE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # not TAB, LF, CR


def _refuse(pattern: re.Pattern[str], value: str) -> str:
    found = pattern.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()):04X} at "
            f"character {found.start() + 1})"
        )
    return value


def label(value: str) -> str:
    """``value`` unchanged. Raises: ValueError: it holds a control character."""
    return _refuse(_CONTROL, value)


def prose(value: str) -> str:
    """``value`` unchanged. Raises: ValueError: it holds a control character other than
    TAB, LF or CR."""
    return _refuse(_PROSE_CONTROL, value)


Label = Annotated[str, AfterValidator(label)]
Prose = Annotated[str, AfterValidator(prose)]

__all__ = ["Label", "Prose", "label", "prose"]
