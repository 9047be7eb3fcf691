"""Text out of a document's bytes: plain text, Markdown, HTML and PDF, as sections.

A section is a heading (the path of headings above it, ``"A > B"`` joined by ``HEADING_JOIN``; empty where the format
has none) and its text; chunking never crosses a section. Markdown is parsed by
``markdown-it-py`` (ATX and setext headings), HTML by ``beautifulsoup4`` (``h1`` to ``h6`` start
sections; scripts, styles and templates dropped), PDF by ``pypdf`` (one section per page,
headed ``page N``). Nothing here is a hand-written parser.

Bad input is refused with a 400 naming the problem (``param`` ``file``): no bytes, bytes that
are not the named format (binary where text was expected, a PDF ``pypdf`` cannot read, one
that is encrypted), or no text at all once extracted. Size limits are the caller's.

Office documents (Word, Excel, PowerPoint, OpenDocument, RTF) are not read (no library for
them is installed): one is refused (``unsupported_document``, naming its type) by its name or
media type, and, under another name, by its leading bytes (a ZIP archive, the container of
.docx, .xlsx, .pptx and .odt; an OLE2 file, that of .doc, .xls and .ppt), instead of being
read as text.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from modelgrid.core.errors import InvalidRequestError

FORMATS = ("text", "markdown", "html", "pdf")
_SUFFIXES = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_MEDIA = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/html": "html",
    "application/pdf": "pdf",
}
HEADING_JOIN = " › "
_UNSUPPORTED_SUFFIXES = {
    ".docx": "Word (.docx)",
    ".doc": "Word (.doc)",
    ".xlsx": "Excel (.xlsx)",
    ".xls": "Excel (.xls)",
    ".pptx": "PowerPoint (.pptx)",
    ".ppt": "PowerPoint (.ppt)",
    ".odt": "OpenDocument text (.odt)",
    ".ods": "OpenDocument spreadsheet (.ods)",
    ".odp": "OpenDocument presentation (.odp)",
    ".rtf": "Rich Text (.rtf)",
}
_UNSUPPORTED_MEDIA = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/rtf": ".rtf",
    "text/rtf": ".rtf",
}
# Leading bytes of the containers office documents come in (PKWARE APPNOTE 4.3.7; the
# Compound File Binary format's header signature, [MS-CFB] 2.2).
_CONTAINERS = {
    b"PK\x03\x04": "a ZIP archive (.docx, .xlsx, .pptx, .odt…)",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an OLE2 file (.doc, .xls, .ppt)",
}
_SUPPORTED = "send text, Markdown, HTML or PDF (a PDF export works)"


@dataclass(frozen=True, slots=True)
class Section:
    """A heading path (``""`` where none) and the text under it."""

    heading: str
    text: str


def _bad(message: str, code: str = "invalid_document") -> InvalidRequestError:
    return InvalidRequestError(message, param="file", code=code)


def detect_format(
    filename: str, content_type: str | None = None, declared: str | None = None
) -> str:
    """The document's format: ``declared`` if given, else by the file name's suffix, else by
    its media type, else plain text.

    Raises:
        InvalidRequestError: ``declared`` is not one of ``FORMATS``; an office document by
            its name or media type (``unsupported_document``, ``param`` ``file``).
    """
    if declared is not None:
        if declared not in FORMATS:
            raise InvalidRequestError(
                f"'format' must be one of {', '.join(FORMATS)}.",
                param="format",
                code="invalid_value",
            )
        return declared
    lower = filename.lower()
    for suffix, fmt in _SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    media = (content_type or "").split(";")[0].strip().lower()
    office = next((s for s in _UNSUPPORTED_SUFFIXES if lower.endswith(s)), None)
    office = office or _UNSUPPORTED_MEDIA.get(media)
    if office is not None:
        raise _bad(
            f"{_UNSUPPORTED_SUFFIXES[office]} files are not supported: {_SUPPORTED}.",
            "unsupported_document",
        )
    return _MEDIA.get(media, "text")


def _text(data: bytes) -> str:
    for magic, what in _CONTAINERS.items():
        if data.startswith(magic):
            raise _bad(
                f"The file is {what}, which is not supported: {_SUPPORTED}.",
                "unsupported_document",
            )
    if b"\x00" in data:
        raise _bad("The file is binary (it holds NUL bytes), not text.", "binary_document")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(
            f"The file is not UTF-8 text (byte {exc.start} is not valid UTF-8).", "binary_document"
        ) from exc


def _markdown(source: str) -> list[Section]:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark")
    tokens = md.parse(source)
    lines = source.splitlines()
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    start = 0
    heading = ""

    def close(end: int) -> None:
        body = "\n".join(lines[start:end]).strip()
        if body:
            sections.append(Section(heading, body))

    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.map is None:
            continue
        close(tok.map[0])
        level = int(tok.tag[1])
        title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
        path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        heading = HEADING_JOIN.join(t for _, t in path)
        start = tok.map[1]
    close(len(lines))
    return sections


def _html(source: str) -> list[Section]:
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, Tag

    soup = BeautifulSoup(source, "html.parser")
    for junk in soup(["script", "style", "template", "noscript", "head"]):
        junk.decompose()
    root = soup.body or soup
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    parts: list[str] = []
    heading = ""
    heads = {f"h{n}" for n in range(1, 7)}

    def close() -> None:
        body = " ".join(" ".join(parts).split())
        if body:
            sections.append(Section(heading, body))
        parts.clear()

    for node in root.descendants:
        if isinstance(node, Tag) and node.name in heads:
            close()
            level = int(node.name[1])
            title = " ".join(node.get_text(" ").split())
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
            heading = HEADING_JOIN.join(t for _, t in path)
        elif isinstance(node, NavigableString) and type(node) is NavigableString:
            parent = node.parent
            if parent is not None and parent.name in heads:
                continue
            if any(p.name in heads for p in node.parents if isinstance(p, Tag)):
                continue
            parts.append(str(node))
    close()
    return sections


def _pdf(data: bytes) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns on every odd object
    if not data.lstrip().startswith(b"%PDF-"):
        raise _bad("The file is not a PDF (it does not start with '%PDF-').")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _bad("The PDF is encrypted: upload it without a password.", "encrypted_document")
        sections = []
        for n, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                sections.append(Section(f"page {n}", text))
    except InvalidRequestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise _bad(f"The PDF cannot be read: {exc}.") from exc
    return sections


def extract(data: bytes, fmt: str) -> list[Section]:
    """The sections of a document of format ``fmt`` (see the module docstring).

    Raises:
        InvalidRequestError: empty, binary, malformed, or without any text (400).
    """
    if not data.strip():
        raise _bad("The file is empty.", "empty_document")
    if fmt == "pdf":
        sections = _pdf(data)
    else:
        source = _text(data)
        if fmt == "markdown":
            sections = _markdown(source)
        elif fmt == "html":
            sections = _html(source)
        else:
            body = source.strip()
            sections = [Section("", body)] if body else []
    sections = [Section(s.heading[:1000], s.text) for s in sections if s.text.strip()]
    if not sections:
        raise _bad("The file holds no text to index.", "empty_document")
    return sections


__all__ = ["FORMATS", "HEADING_JOIN", "Section", "detect_format", "extract"]
