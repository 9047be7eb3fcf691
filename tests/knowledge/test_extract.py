"""Text extraction: sections by heading (Markdown, HTML) or page (PDF); bad input refused."""

from __future__ import annotations

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.knowledge.extract import Section, detect_format, extract
from tests.knowledge.pdf_fixture import tiny_pdf


def test_plain_text_is_one_section() -> None:
    assert extract(b"\xef\xbb\xbfHello there.\n", "text") == [Section("", "Hello there.")]


def test_markdown_sections_carry_their_heading_path() -> None:
    md = b"Intro line.\n\n# Install\n\nRun pip.\n\n## On Linux\n\nUse apt.\n\nSetext\n------\n\nBody.\n"
    assert extract(md, "markdown") == [
        Section("", "Intro line."),
        Section("Install", "Run pip."),
        Section("Install › On Linux", "Use apt."),
        Section("Install › Setext", "Body."),
    ]


def test_html_sections_without_scripts_or_styles() -> None:
    html = (
        b"<html><head><title>T</title><style>p{}</style></head><body>"
        b"<p>Lead.</p><h1>Billing</h1><p>Invoices are <b>monthly</b>.</p>"
        b"<script>var x = 'secret';</script><h2>Refunds</h2><p>Within 30 days.</p></body></html>"
    )
    assert extract(html, "html") == [
        Section("", "Lead."),
        Section("Billing", "Invoices are monthly ."),
        Section("Billing › Refunds", "Within 30 days."),
    ]


def test_pdf_one_section_per_page() -> None:
    sections = extract(tiny_pdf(["Alpha page text", "Beta page text"]), "pdf")
    assert sections == [Section("page 1", "Alpha page text"), Section("page 2", "Beta page text")]


@pytest.mark.parametrize(
    ("data", "fmt", "code", "words"),
    [
        (b"", "text", "empty_document", "empty"),
        (b"  \n\t ", "markdown", "empty_document", "empty"),
        (b"<html><body><script>x()</script></body></html>", "html", "empty_document", "no text"),
        (b"abc\x00def", "text", "binary_document", "NUL"),
        (b"\xff\xfe\xfa bad", "markdown", "binary_document", "not UTF-8"),
        (b"not a pdf at all", "pdf", "invalid_document", "not a PDF"),
        (b"%PDF-1.4\n1 0 obj garbage", "pdf", "invalid_document", "cannot be read"),
    ],
)
def test_bad_documents_are_400s(data: bytes, fmt: str, code: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        extract(data, fmt)
    assert err.value.status == 400
    assert err.value.code == code
    assert err.value.param == "file"
    assert words in err.value.message


def test_pdf_without_text_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="no text"):
        extract(tiny_pdf([""]), "pdf")


def test_format_detection() -> None:
    assert detect_format("guide.MD") == "markdown"
    assert detect_format("page.htm") == "html"
    assert detect_format("x.pdf") == "pdf"
    assert detect_format("blob", "application/pdf") == "pdf"
    assert detect_format("notes") == "text"
    assert detect_format("x.pdf", declared="text") == "text"
    with pytest.raises(InvalidRequestError) as err:
        detect_format("x", declared="docx")
    assert err.value.param == "format"
