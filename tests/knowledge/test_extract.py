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


def _zip(name: str, text: str) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(name, text)
    return out.getvalue()


DOCX = _zip("word/document.xml", "<w:document><w:body><w:p><w:t>Refunds</w:t></w:p></w:body>")
SUPPORTED = "send text, Markdown, HTML or PDF"


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        ("report.docx", None, "Word (.docx)"),
        ("REPORT.DOC", None, "Word (.doc)"),
        ("sheet.xlsx", None, "Excel (.xlsx)"),
        ("deck.pptx", None, "PowerPoint (.pptx)"),
        ("letter.odt", None, "OpenDocument text (.odt)"),
        ("memo.rtf", None, "Rich Text (.rtf)"),
        (
            "upload",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "Word (.docx)",
        ),
    ],
)
def test_office_documents_are_refused_by_name(
    filename: str, content_type: str | None, kind: str
) -> None:
    with pytest.raises(InvalidRequestError) as err:
        detect_format(filename, content_type)
    assert (err.value.status, err.value.param, err.value.code) == (
        400,
        "file",
        "unsupported_document",
    )
    assert err.value.message == f"{kind} files are not supported: {SUPPORTED} (a PDF export works)."


def test_an_office_document_under_a_text_name_is_refused_by_its_bytes() -> None:
    for data, what in [
        (DOCX, "a ZIP archive (.docx, .xlsx, .pptx, .odt…)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "an OLE2 file (.doc, .xls, .ppt)"),
    ]:
        for fmt in ("text", "markdown", "html"):
            with pytest.raises(InvalidRequestError) as err:
                extract(data, fmt)
            assert (err.value.param, err.value.code) == ("file", "unsupported_document")
            assert err.value.message == (
                f"The file is {what}, which is not supported: {SUPPORTED} (a PDF export works)."
            )
