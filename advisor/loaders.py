"""Reading data as users hold it: JSONL, JSON, CSV, TSV, Parquet, `datasets` folders and Hub ids, chat rows.

Each format is one small function behind LOADERS (name -> function) returning
(where, row) pairs: `where` names the line or row for error messages, `row` is a
plain dict with the source's own column names. A new format is one function and
one entry. Mapping columns to the task's field names and turning chat
`messages` into input/output happen after, in `to_fields`, the same for every
format. Nothing here executes data: JSON, CSV and Parquet are parsed as values.

All text files are decoded by `read_text`, so a byte-order mark, a non-UTF-8
file or gzip/bzip2/xz compression (`train.jsonl.gz`) is treated the same in
task.yaml, JSONL, CSV, instructions and documents.

Documents go through maintained parsers rather than our own: YAML front matter
is found by python-frontmatter, HTML becomes Markdown (headings, lists, tables)
with beautifulsoup4 + markdownify, PDFs are read by pypdf.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

# The fields an example row may have (the task's names); `columns:` maps a source's names onto these.
FIELDS = ("id", "input", "output", "answers", "choices", "tags", "source", "cluster", "paraphrases", "messages")
LIST_FIELDS = ("answers", "choices", "tags", "paraphrases")
CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "human": "user",
              "assistant": "assistant", "gpt": "assistant", "model": "assistant"}


class LoadError(Exception):
    """A file or dataset that cannot be read as rows; `where` names the line or row, `fix` what to do."""

    def __init__(self, path: Path | str, where: str, message: str, fix: str = ""):
        self.path, self.where, self.message, self.fix = str(path), where, message, fix
        super().__init__(f"{path}: {where}: {message}" if where else f"{path}: {message}")


Rows = list[tuple[str, dict]]


# ------------------------------------------------------------------ text, once


# Compression suffix -> the standard library's decompressor: `train.jsonl.gz` is read as `train.jsonl`.
DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {".gz": gzip.decompress, ".bz2": bz2.decompress,
                                                   ".xz": lzma.decompress}


def format_suffix(path: Path) -> str:
    """The suffix that names the format, under any compression suffix: `.csv` for both x.csv and x.csv.gz."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in DECOMPRESS else suffix


def data_stem(path: Path) -> str:
    """The name without its format and compression suffixes: `train` for train.jsonl and train.jsonl.gz."""
    return Path(path.stem).stem if path.suffix.lower() in DECOMPRESS else path.stem


def read_text(path: Path) -> str:
    """UTF-8 text with an optional byte-order mark removed; binary or other encodings are a LoadError."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LoadError(path, "", f"cannot read: {e.strerror}") from None
    unpack = DECOMPRESS.get(path.suffix.lower())
    if unpack is not None:
        try:
            data = unpack(data)
        except (OSError, EOFError, lzma.LZMAError) as e:  # each decompressor's "not this format" or "cut off"
            raise LoadError(path, "", f"cannot be decompressed as {path.suffix} ({e})",
                            "check the file is complete, or remove the compression suffix from its name") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LoadError(path, "", "is UTF-16 text", "save it as UTF-8")
    if b"\x00" in data:
        raise LoadError(path, "", "is a binary file, expected UTF-8 text")
    try:
        return data.decode("utf-8").replace("\r\n", "\n")  # Windows line ends read as \n everywhere
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LoadError(path, f"line {line}", "is not valid UTF-8 text", "save the file as UTF-8") from None


# ---------------------------------------------------------- one function a format


def jsonl_rows(path: Path) -> Rows:
    """One JSON object a non-blank line; `where` is the line number."""
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise LoadError(path, f"line {n}", f"not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise LoadError(path, f"line {n}", "each line must be a JSON object")
        rows.append((f"line {n}", raw))
    return rows


def json_rows(path: Path) -> Rows:
    """A JSON array of objects (`[{"input": ...}, ...]`); `where` is the item's position, from 1.

    A `.json` file that is really JSON Lines (one object a line) is read as such.
    """
    text = read_text(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return jsonl_rows(path)
        raise LoadError(path, f"line {e.lineno}", f"not valid JSON ({e.msg})") from None
    if not isinstance(raw, list):
        raise LoadError(path, "", f"holds a JSON {type(raw).__name__}, expected an array of objects (one per example)",
                        "write [{\"input\": ..., \"output\": ...}, ...], or one object a line in a .jsonl file")
    for k, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise LoadError(path, f"item {k}", "each item of the array must be a JSON object")
    return [(f"item {k}", item) for k, item in enumerate(raw, start=1)]


# Delimiters a CSV export uses (Excel in many locales writes `;`, some tools a tab); the sniffer picks among these.
CSV_DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024


def sniff_delimiter(text: str, default: str) -> str:
    """The delimiter the standard library's csv.Sniffer finds in the first lines, else `default`.

    Only the delimiter is taken: quoting stays the CSV standard's double quote, which a
    guess from a sample could get wrong on text with apostrophes.
    """
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:  # one column, or no delimiter stands out
        return default


def _delimited_rows(path: Path, sep: str | None) -> Rows:
    """CSV/TSV through pandas; `sep` None sniffs it (a `;` or tab export named .csv)."""
    import pandas as pd

    text = read_text(path)
    sep = sep or sniff_delimiter(text, ",")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise LoadError(path, "", f"cannot be read as {'TSV' if sep == chr(9) else 'CSV'} "
                                  f"(separator {sep!r}): {str(e).strip()}") from None
    # The header is line 1, so data row k is line k + 1 (for rows without embedded newlines).
    return [(f"row {k}", _cells(row)) for k, row in enumerate(frame.to_dict(orient="records"), start=1)]


def _cells(row: dict) -> dict:
    """A CSV cell holding a JSON list (`["a", "b"]`) is a list; an empty cell is None (absent)."""
    out = {}
    for key, value in row.items():
        if value == "":
            out[str(key)] = None
            continue
        if value.startswith("[") and value.endswith("]"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[str(key)] = value
    return out


def csv_rows(path: Path) -> Rows:
    return _delimited_rows(path, None)


def tsv_rows(path: Path) -> Rows:
    return _delimited_rows(path, "\t")


def parquet_rows(path: Path) -> Rows:
    pq = _optional("pyarrow.parquet", "pyarrow", "data")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file; all mean "not Parquet"
        raise LoadError(path, "", f"cannot be read as Parquet: {e}") from None
    return [(f"row {k}", r) for k, r in enumerate(table.to_pylist(), start=1)]


def saved_dataset_rows(path: Path, split: str | None = None) -> Rows:
    """A folder written by `datasets.Dataset.save_to_disk` (a DatasetDict needs `split`)."""
    datasets = _optional("datasets", "datasets", "data")
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise LoadError(path, "", f"is not a folder saved with datasets' save_to_disk ({e})") from None
    return _dataset_rows(ds, path, split)


def hub_dataset_rows(name: str, split: str | None, config: str | None, revision: str | None = None) -> Rows:
    """A Hugging Face dataset id, from the local datasets cache when it is there (no network needed).

    `revision` (a tag, branch or commit) pins the version; without it the newest is read.
    """
    datasets = _optional("datasets", "datasets", "data")
    if not split:
        raise LoadError(name, "split", "a Hugging Face dataset needs `split` (e.g. train, test)")
    try:
        ds = datasets.load_dataset(name, config, split=split, revision=revision)
    except Exception as e:  # offline, unknown id, bad split/config: datasets raises many types; all are "cannot load"
        raise LoadError(name, "", f"cannot load this Hugging Face dataset (config {config!r}, split {split!r}"
                                  + (f", revision {revision!r}" if revision else "") + "): "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        "it is neither in the local datasets cache nor reachable; load it once with a network "
                        "(or save_to_disk into the task folder and name that folder)") from None
    return _dataset_rows(ds, name, None)


def _dataset_rows(ds, where: Path | str, split: str | None) -> Rows:
    if hasattr(ds, "keys") and not hasattr(ds, "features"):  # a DatasetDict
        if split not in ds:
            raise LoadError(where, "split", f"holds splits {sorted(ds)}; name one with `split:`")
        ds = ds[split]
    return [(f"row {k}", r) for k, r in enumerate(ds.to_list(), start=1)]


def _optional(module: str, package: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LoadError(module, "", f"reading this format needs the `{package}` package",
                        f"pip install 'advisor[{extra}]'") from None


# Suffix (or "folder") -> reader. A new format is one function and one line here.
LOADERS: dict[str, Callable[[Path], Rows]] = {
    ".jsonl": jsonl_rows,
    ".json": json_rows,
    ".csv": csv_rows,
    ".tsv": tsv_rows,
    ".parquet": parquet_rows,
    "folder": saved_dataset_rows,
}
TEXT_FORMATS = (".jsonl", ".json", ".csv", ".tsv")  # read through read_text, so they may be compressed


def read_rows(path: Path, split: str | None = None) -> Rows:
    """Rows of a file or saved dataset folder, by its suffix (under a compression suffix for text formats)."""
    if path.is_dir():
        return saved_dataset_rows(path, split)
    suffix = format_suffix(path)
    compressed = path.suffix.lower() in DECOMPRESS
    reader = LOADERS.get(suffix)
    if reader is None or (compressed and suffix not in TEXT_FORMATS):
        known = ", ".join(k for k in LOADERS if k != "folder")
        name = suffix + path.suffix.lower() if compressed else path.suffix
        raise LoadError(path, "", f"unknown data format {name or '(no suffix)'!r}",
                        f"use one of {known} (the text formats may be compressed: "
                        f"{', '.join(DECOMPRESS)}) or a save_to_disk folder")
    return reader(path)


# ------------------------------------------------- columns and chat -> task fields


def resolve_columns(columns: dict[str, str], names: list[str], required: tuple[str, ...]) -> tuple[dict, list]:
    """The mapping for one file with these column names, and the mapped columns it lacks.

    A field whose mapped column is not in the file but whose own name is (a file already
    in the task's names, such as eval_updated.jsonl next to a mapped CSV) reads its own name.
    A lacking column is a problem only for a `required` field: an eval file may give
    `answers` where train gives `output`.
    """
    resolved, missing = {}, []
    for field_name, column in columns.items():
        if column in names:
            resolved[field_name] = column
        elif field_name in names:
            resolved[field_name] = field_name
        elif field_name in required:
            missing.append(column)
    return resolved, missing


def to_fields(row: dict, columns: dict[str, str]) -> tuple[dict, str | None]:
    """A source row in the task's field names, and the row's system message if it is a chat row.

    `columns` maps a task field to the source column (`input: question`), resolved for the
    file by `resolve_columns`. With a mapping, other columns are ignored (exports carry
    many); without one, the row is taken as is, so a misspelt field is reported rather
    than silently dropped. Empty cells and nulls are absent values.
    """
    if columns:
        out = {field: row.get(col) for field, col in columns.items()}
        out |= {f: row[f] for f in FIELDS if f in row and f not in columns and f not in columns.values()}
    else:
        out = dict(row)
    out = {k: v for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    for f in LIST_FIELDS:
        if isinstance(out.get(f), str):
            out[f] = [out[f]]
    if "id" in out and isinstance(out["id"], (int, float)) and not isinstance(out["id"], bool):
        out["id"] = str(int(out["id"])) if float(out["id"]).is_integer() else str(out["id"])
    system = None
    if "messages" in out:
        system, out = _from_chat(out)
    return out, system


def _from_chat(row: dict) -> tuple[str | None, dict]:
    """System message -> instructions candidate, last assistant turn -> output, earlier turns -> input."""
    messages = row.pop("messages")
    if isinstance(messages, str):  # a chat column in a CSV holds JSON text
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise ValueError("`messages` must be a list of {role, content} (JSON in a CSV cell)") from None
    if not isinstance(messages, list) or not messages:
        raise ValueError("`messages` must be a non-empty list of {role, content}")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be an object with role and content")
        role = CHAT_ROLES.get(str(m.get("role", m.get("from", ""))).lower())
        content = _content_text(m.get("content", m.get("value")))
        if role is None or content is None:
            raise ValueError(f"messages[{i}] needs a role (system, user or assistant) and text content")
        turns.append((role, content))
    system = "\n".join(c for r, c in turns if r == "system") or None
    dialogue = [(r, c) for r, c in turns if r != "system"]
    if "input" in row or "output" in row:
        raise ValueError("a chat row carries `messages` instead of `input`/`output`, not both")
    if dialogue and dialogue[-1][0] == "assistant":
        row["output"] = dialogue[-1][1]
        dialogue = dialogue[:-1]
    if not dialogue or dialogue[-1][0] != "user":
        raise ValueError("`messages` must end with a user turn (or a user turn and the assistant's answer)")
    if len(dialogue) == 1:
        row["input"] = dialogue[0][1]
    else:
        row["input"] = "\n".join(f"{r.capitalize()}: {c}" for r, c in dialogue)
    return system, row


def _content_text(content: Any) -> str | None:
    """OpenAI content is a string or a list of parts; only text parts are kept."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def iter_columns(rows: Rows) -> Iterator[str]:
    """Column names in first-seen order (for `advisor init --from` and error messages)."""
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(row))
    yield from seen


# ------------------------------------------------------------------- documents

# Per-document metadata carried into citations; a document gives any of them (all optional).
DOC_META = ("title", "url", "updated")


@dataclass(frozen=True)
class DocRecord:
    """One document a file holds: its text, citation metadata, and anything to tell the person."""

    text: str
    meta: dict = field(default_factory=dict)
    row_id: str | None = None  # a JSONL row's id; None: the document is named by its file's path
    warning: str = ""  # not an error: the document is read, but part of it may be missing (e.g. scanned pages)


def text_document(path: Path) -> list[DocRecord]:
    return [DocRecord(read_text(path))]


def markdown_document(path: Path) -> list[DocRecord]:
    """Markdown, with optional YAML front matter (`---` lines) holding title, url, updated.

    python-frontmatter finds the block (CRLF line ends, an empty block, a closing line of
    more dashes); we parse it with safe YAML. A leading block that is not a mapping is a
    horizontal rule, not front matter, and stays in the text.
    """
    import frontmatter
    import yaml

    text = read_text(path)
    handler = frontmatter.YAMLHandler()
    if not handler.detect(text):
        return [DocRecord(text)]
    try:
        block, body = handler.split(text)
    except ValueError:  # an opening line of dashes that nothing closes
        return [DocRecord(text)]
    try:
        front = yaml.safe_load(block)
    except yaml.YAMLError as e:
        raise LoadError(path, "front matter", f"invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if front is not None and not isinstance(front, dict):
        return [DocRecord(text)]
    return [DocRecord(body.lstrip("\n"), _doc_meta(path, "front matter", front or {}))]


# Page furniture that is no part of a document's content. `header` and `footer` count only at page level:
# inside an article, main, section, aside or nav they hold that part's own heading or notes (HTML's rule
# for the banner and contentinfo landmarks).
HTML_DROP = ("script", "style", "template", "noscript", "nav", "head", "iframe", "svg",
             "[role=navigation]", "[role=banner]", "[role=contentinfo]", "[hidden]", "[aria-hidden=true]")
HTML_SECTIONING = ("article", "main", "section", "aside", "nav")


def html_document(path: Path) -> list[DocRecord]:
    """The text a reader sees, as Markdown; <title> is the title.

    Headings become `## ` lines (so chunking keeps sections), list items and table rows
    one a line, table cells separated by `|`, links and emphasis their plain words.
    """
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(read_text(path), "html.parser")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup.select(", ".join(HTML_DROP)):
        tag.decompose()
    for tag in soup.find_all(["header", "footer"]):
        if not tag.decomposed and tag.find_parent(HTML_SECTIONING) is None:
            tag.decompose()
    markdown = MarkdownConverter(heading_style="ATX", bullets="-", table_infer_header=True,
                                 strip=["a", "img", "b", "strong", "em", "i", "u"],
                                 escape_asterisks=False, escape_underscores=False, escape_misc=False,
                                 ).convert_soup(soup)
    text = "\n".join(line.rstrip() for line in markdown.splitlines()).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return [DocRecord(text, {"title": title} if title else {})]


def pdf_document(path: Path) -> list[DocRecord]:
    """The PDF's text layer, page by page; pages without one (scanned images) are named in a warning."""
    pypdf = _optional("pypdf", "pypdf", "pdf")
    try:
        reader = pypdf.PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata or {}).get("/Title")
    except Exception as e:  # pypdf raises many types for a damaged file
        raise LoadError(path, "", f"cannot be read as PDF: {e}") from None
    empty = [n for n, text in enumerate(pages, start=1) if not text.strip()]
    warning = ""
    if empty:
        listed = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        which = "no page has" if len(empty) == len(pages) else \
            f"page {listed} of {len(pages)} has no" if len(empty) == 1 else f"pages {listed} of {len(pages)} have no"
        warning = (f"{which} extractable text (scanned images?), so retrieval cannot find what it says; run OCR "
                   f"on the PDF first (e.g. `ocrmypdf in.pdf out.pdf`) or give its text as .md or .txt")
    text = "\n\n".join(p for p in pages if p.strip())
    return [DocRecord(text, {"title": str(title)} if title else {}, warning=warning)]


def jsonl_documents(path: Path) -> list[DocRecord]:
    """One passage a line: `text`, optional `id`, `title`, `url`, `updated`."""
    out = []
    for where, raw in jsonl_rows(path):
        if not isinstance(raw.get("text"), str):
            raise LoadError(path, where, "a document line needs a string field `text`")
        unknown = set(raw) - {"id", "text", *DOC_META}
        if unknown:
            raise LoadError(path, where, f"unknown field(s) {sorted(unknown)}", f"a document line has id, text, "
                                                                               f"{', '.join(DOC_META)}")
        doc_id = str(raw["id"]) if raw.get("id") not in (None, "") else f"#{where.split()[-1]}"
        out.append(DocRecord(raw["text"], _doc_meta(path, where, raw), row_id=doc_id))
    return out


def _doc_meta(path: Path, where: str, raw: dict) -> dict:
    meta = {}
    for key in DOC_META:
        value = raw.get(key)
        if value is None:
            continue
        if hasattr(value, "isoformat"):  # YAML front matter reads `updated: 2026-01-31` as a date
            value = value.isoformat()
        if not isinstance(value, str):
            raise LoadError(path, f"{where}, field {key}", f"must be text, got {type(value).__name__}")
        meta[key] = value
    return meta


DOCUMENT_LOADERS: dict[str, Callable[[Path], list[DocRecord]]] = {
    ".md": markdown_document,
    ".txt": text_document,
    ".html": html_document,
    ".htm": html_document,
    ".jsonl": jsonl_documents,
    ".pdf": pdf_document,
}
