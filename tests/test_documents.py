"""Documents as people save them, each case a real file: front matter, HTML pages, scanned PDFs.

Markdown front matter is found by python-frontmatter, HTML becomes Markdown through
beautifulsoup4 + markdownify, PDFs are read by pypdf (advisor/loaders.py).
"""
from __future__ import annotations

import io

import pytest

from advisor import loaders
from advisor.task import load_task
from tests.conftest import pdf_bytes, write_task

BODY = "# Zephyr Kettle\n\nThe Zephyr Kettle costs $73.\n"


def _markdown(tmp_path, data: bytes) -> loaders.DocRecord:
    path = tmp_path / "doc.md"
    path.write_bytes(data)
    (record,) = loaders.markdown_document(path)
    return record


def test_front_matter_with_windows_line_ends_is_read_and_removed(tmp_path):
    data = b"---\r\ntitle: Zephyr Kettle\r\nupdated: 2026-11-02\r\n---\r\n" + BODY.replace("\n", "\r\n").encode()
    record = _markdown(tmp_path, data)
    assert record.meta == {"title": "Zephyr Kettle", "updated": "2026-11-02"}
    assert record.text == BODY  # no YAML left, and no carriage returns


def test_an_empty_front_matter_block_is_removed(tmp_path):
    record = _markdown(tmp_path, b"---\n---\n" + BODY.encode())
    assert record.meta == {} and record.text == BODY


def test_a_closing_line_of_more_dashes_leaves_no_stray_dash(tmp_path):
    record = _markdown(tmp_path, b"---\ntitle: Zephyr Kettle\n----\n" + BODY.encode() + b"\n----\n\nMore text.\n")
    assert record.meta == {"title": "Zephyr Kettle"}
    assert record.text == BODY + "\n----\n\nMore text.\n"  # the rule in the body stays, the front matter goes


def test_a_leading_horizontal_rule_is_not_front_matter(tmp_path):
    text = "---\n\nThe Zephyr Kettle costs $73.\n\n---\n\nIt holds 1.7 litres.\n"
    record = _markdown(tmp_path, text.encode())
    assert record.meta == {} and record.text == text  # a block that is not a mapping keeps all its words
    assert _markdown(tmp_path, b"---\ntitle: never closed\n" + BODY.encode()).text.endswith(BODY)


def test_bad_front_matter_is_an_error_naming_it(tmp_path):
    with pytest.raises(loaders.LoadError, match="front matter: invalid YAML"):
        _markdown(tmp_path, b"---\ntitle: [unclosed\n---\n" + BODY.encode())


PAGE = """<!doctype html>
<html><head><title>Zephyr Kettle | Shop</title><style>p { color: red }</style></head>
<body>
<header><a href="/">Home</a> <a href="/cart">Cart (0)</a></header>
<nav><ul><li><a href="/about">About us</a></li><li><a href="/jobs">Careers</a></li></ul></nav>
<div role="navigation">Breadcrumbs: Shop / Kettles</div>
<main>
  <article>
    <header><h1>Zephyr Kettle</h1></header>
    <p>Boils <b>1.7 litres</b> in <a href="/speed">three minutes</a>.</p>
    <h2>Prices</h2>
    <table>
      <tr><th>Product</th><th>Price</th></tr>
      <tr><td>Kettle</td><td>$73</td></tr>
      <tr><td>Filter</td><td>$9</td></tr>
    </table>
    <h2>Returns</h2>
    <ul><li>Within 45 days</li><li>Keep the receipt</li></ul>
    <ol><li>Pack it</li><li>Post it</li></ol>
    <footer>Page updated in November.</footer>
  </article>
</main>
<script>document.write("tracking pixel")</script>
<footer>Copyright 2026 Shop Inc. <a href="/privacy">Privacy</a></footer>
</body></html>
"""


def test_html_keeps_tables_lists_and_headings_as_lines_and_drops_page_furniture(tmp_path):
    path = tmp_path / "kettle.html"
    path.write_text(PAGE)
    (record,) = loaders.html_document(path)
    lines = record.text.splitlines()
    assert record.meta == {"title": "Zephyr Kettle | Shop"}
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    assert ["Product", "Price"] in rows and ["Kettle", "$73"] in rows and ["Filter", "$9"] in rows
    assert "Kettle$73" not in record.text
    assert "# Zephyr Kettle" in lines and "## Prices" in lines and "## Returns" in lines  # sections for chunking
    assert {"- Within 45 days", "- Keep the receipt", "1. Pack it", "2. Post it"} <= set(lines)
    assert "Boils 1.7 litres in three minutes." in lines  # links and emphasis as their words
    assert "Page updated in November." in lines  # an article's own footer is content
    for furniture in ("Home", "Cart", "About us", "Careers", "Breadcrumbs", "Copyright", "Privacy", "tracking",
                      "color", "<", "Zephyr Kettle | Shop"):
        assert furniture not in record.text


def _image_only_pdf() -> bytes:
    """A page that is only a picture of words, as a scanner makes it: no text layer."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(image).text((20, 80), "Descale the kettle monthly.", fill="black")
    out = io.BytesIO()
    image.save(out, "PDF")
    return out.getvalue()


def test_pdf_pages_without_text_are_warned_about(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    root = write_task(tmp_path / "t")
    (root / "docs" / "scan.pdf").write_bytes(_image_only_pdf())
    mixed = pypdf.PdfWriter()
    for part in (pdf_bytes("Descale the kettle monthly."), _image_only_pdf()):
        mixed.append(pypdf.PdfReader(io.BytesIO(part)))
    with (root / "docs" / "mixed.pdf").open("wb") as f:
        mixed.write(f)
    (root / "docs" / "manual.pdf").write_bytes(pdf_bytes("Descale the kettle monthly."))

    task = load_task(root)
    by_id = {d.id: d for d in task.documents}
    assert by_id["scan.pdf"].text == "" and "Descale the kettle monthly." in by_id["mixed.pdf"].text
    (scan,) = [n for n in task.notices if "scan.pdf" in n]
    assert "no page has extractable text" in scan and "OCR" in scan
    (partial,) = [n for n in task.notices if "mixed.pdf" in n]
    assert "page 2 of 2 has no extractable text" in partial
    assert not [n for n in task.notices if "manual.pdf" in n]  # a PDF with its text says nothing
