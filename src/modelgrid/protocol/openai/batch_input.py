"""A batch input file's contract, checked line by line as the bytes stream past.

Each non-blank line is a JSON object ``{"custom_id", "method": "POST", "url", "body"}``
(OpenAI's Batch API input format, https://platform.openai.com/docs/api-reference/batch):
``custom_id`` a string of 1..512 characters, unique in the file; ``url`` one of ``URLS``, the
same on every line; ``body`` an object whose ``model`` is a string, the same on every line,
served here and allowed to the caller. The file is at most ``max_file_bytes``, each line at
most ``max_line_bytes`` (without its newline), at most ``max_lines`` request lines; blank
lines are ignored but counted, so a line number is the one an editor shows.

The first broken rule raises ``BatchInputError`` naming the line and the field (``param``
``line 3: custom_id``). Memory stays bounded however large the file: one line at a time,
plus a 16-byte digest per ``custom_id`` (with the line that used it).

``validate_batch_line`` checks one parsed line (the batch runner and the batch create path
reuse it); ``LineSplitter`` / ``request_lines`` split a stream of chunks into numbered lines;
``InputCheck`` checks a whole file while passing its chunks on (to the file store).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from modelgrid.config import BatchSettings
from modelgrid.core.errors import BatchInputError

URLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
CUSTOM_ID_MAX = 512
_SHOWN_MAX = 64  # characters of a client's value quoted back in a message


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request line of a batch input file.

    Attributes:
        line: Its 1-based line number in the file (blank lines counted).
        custom_id: The caller's id for it.
        url: The endpoint it is for (one of ``URLS``).
        model: ``body["model"]``.
        body: The request body, as sent.
    """

    line: int
    custom_id: str
    url: str
    model: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputSummary:
    """What a valid input file holds: its one ``url`` and ``model``, its request ``lines``
    (blank ones not counted) and its size in ``bytes``."""

    url: str
    model: str
    lines: int
    bytes: int


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def validate_batch_line(obj: object, line: int) -> BatchLine:
    """Check one parsed line against the contract (the rules of one line alone).

    Args:
        obj: The line's parsed JSON.
        line: Its 1-based number, for the error.

    Raises:
        BatchInputError: not an object (``invalid_json_line``); ``custom_id``, ``method``,
            ``body`` or ``body.model`` missing (``missing_required_parameter``) or of the wrong
            type or size (``invalid_value``); an unsupported ``url`` (``invalid_url``).
    """
    if not isinstance(obj, dict):
        raise BatchInputError(
            f"Line {line} must be a JSON object.", code="invalid_json_line", line=line
        )
    for field in ("custom_id", "method", "url", "body"):
        if field not in obj:
            raise BatchInputError(
                f"Line {line}: '{field}' is missing.",
                code="missing_required_parameter",
                line=line,
                field=field,
            )
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
        raise BatchInputError(
            f"Line {line}: 'custom_id' must be a string of 1 to {CUSTOM_ID_MAX} characters.",
            code="invalid_value",
            line=line,
            field="custom_id",
        )
    if obj["method"] != "POST":
        raise BatchInputError(
            f"Line {line}: 'method' must be 'POST', not '{_shown(obj['method'])}'.",
            code="invalid_value",
            line=line,
            field="method",
        )
    url = obj["url"]
    if url not in URLS:
        raise BatchInputError(
            f"Line {line}: 'url' '{_shown(url)}' is not supported; use one of {', '.join(URLS)}.",
            code="invalid_url",
            line=line,
            field="url",
        )
    body = obj["body"]
    if not isinstance(body, dict):
        raise BatchInputError(
            f"Line {line}: 'body' must be a JSON object.",
            code="invalid_value",
            line=line,
            field="body",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BatchInputError(
            f"Line {line}: 'body.model' must be a non-empty string.",
            code="missing_required_parameter" if model is None else "invalid_value",
            line=line,
            field="body.model",
        )
    return BatchLine(line=line, custom_id=custom_id, url=url, model=model, body=body)


def parse_batch_line(raw: bytes, line: int) -> BatchLine:
    """``validate_batch_line`` of the JSON in ``raw``.

    Raises:
        BatchInputError: not JSON (``invalid_json_line``), or see ``validate_batch_line``.
    """
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON"
        raise BatchInputError(
            f"Line {line} is not valid JSON ({why}).", code="invalid_json_line", line=line
        ) from None
    return validate_batch_line(obj, line)


def _too_long(line: int, limit: int) -> BatchInputError:
    return BatchInputError(
        f"Line {line} is longer than {limit} bytes.", code="line_too_large", line=line
    )


class LineSplitter:
    """Splits chunks pushed in (``feed``, then ``finish``) into the non-blank lines, each with
    its 1-based line number (blank lines counted), without the newline (``\\n`` or ``\\r\\n``).
    Holds at most one partial line.

    Raises (from ``feed`` and ``finish``):
        BatchInputError: a line longer than ``max_line_bytes`` (``line_too_large``), as soon
            as it passes the limit, before it is all read.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._buf = bytearray()
        self._number = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += chunk
        out: list[tuple[int, bytes]] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            self._number += 1
            raw = bytes(buf[start:end]).removesuffix(b"\r")
            start = end + 1
            if len(raw) > self._max:
                raise _too_long(self._number, self._max)
            if raw.strip():
                out.append((self._number, raw))
        del buf[:start]
        if len(buf.removesuffix(b"\r")) > self._max:
            raise _too_long(self._number + 1, self._max)
        return out

    def finish(self) -> list[tuple[int, bytes]]:
        raw, self._buf = bytes(self._buf), bytearray()
        return [(self._number + 1, raw)] if raw.strip() else []


def request_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The numbered non-blank lines of a stream of chunks (see ``LineSplitter``)."""
    splitter = LineSplitter(max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


class InputCheck:
    """Checks a whole input file while its chunks pass through ``passing``.

    Args:
        limits: The size limits (``max_file_bytes``, ``max_lines``, ``max_line_bytes``).
        check_model: Called once, with the file's model and the number of the line that
            named it first; raises ``BatchInputError`` for a model not served, or not allowed
            to the caller.
    """

    def __init__(self, limits: BatchSettings, check_model: Callable[[str, int], None]) -> None:
        self._limits = limits
        self._check_model = check_model
        self._first: BatchLine | None = None
        self._ids: dict[bytes, int] = {}
        self._bytes = 0
        self._lines = 0

    def passing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` again, each yielded once the lines it completes are checked (the
        consumer writes them to a temporary file, renamed only when this ends without error).

        Raises:
            BatchInputError: the first broken rule (see the module's docstring).
        """
        limit = self._limits.max_file_bytes
        splitter = LineSplitter(self._limits.max_line_bytes)
        for chunk in chunks:
            self._bytes += len(chunk)
            if self._bytes > limit:
                raise BatchInputError(
                    f"The file is larger than {limit} bytes.", code="file_too_large", field="file"
                )
            for number, raw in splitter.feed(chunk):
                self._line(parse_batch_line(raw, number))
            yield chunk
        for number, raw in splitter.finish():
            self._line(parse_batch_line(raw, number))
        if self._first is None:
            raise BatchInputError(
                "The file holds no request lines.", code="empty_file", field="file"
            )

    def _line(self, req: BatchLine) -> None:
        n = req.line
        self._lines += 1
        if self._lines > self._limits.max_lines:
            raise BatchInputError(
                f"Line {n}: the file has more than {self._limits.max_lines} request lines.",
                code="too_many_tasks",
                line=n,
            )
        first = self._first
        if first is None:
            self._check_model(req.model, n)
            self._first = req
        elif req.url != first.url:
            raise BatchInputError(
                f"Line {n}: 'url' '{req.url}' differs from line {first.line}'s "
                f"'{first.url}': one url per file.",
                code="mismatched_url",
                line=n,
                field="url",
            )
        elif req.model != first.model:
            raise BatchInputError(
                f"Line {n}: 'body.model' '{_shown(req.model)}' differs from line "
                f"{first.line}'s '{_shown(first.model)}': one model per file.",
                code="mismatched_model",
                line=n,
                field="body.model",
            )
        digest = hashlib.blake2b(req.custom_id.encode(), digest_size=16).digest()
        seen = self._ids.setdefault(digest, n)
        if seen != n:
            raise BatchInputError(
                f"Line {n}: 'custom_id' '{_shown(req.custom_id)}' is used by line {seen} too.",
                code="duplicate_custom_id",
                line=n,
                field="custom_id",
            )

    def summary(self) -> InputSummary:
        """What the checked file holds (after ``passing`` ran to its end)."""
        if self._first is None:
            raise RuntimeError("summary() before the whole file was checked")
        return InputSummary(self._first.url, self._first.model, self._lines, self._bytes)


__all__ = [
    "CUSTOM_ID_MAX",
    "URLS",
    "BatchLine",
    "InputCheck",
    "InputSummary",
    "LineSplitter",
    "parse_batch_line",
    "request_lines",
    "validate_batch_line",
]
