"""Data as users hold it: the same tiny task from JSONL, CSV, Parquet, a `datasets` folder and chat rows.

Every format must give the same examples; column mappings, one-file splits and
documents in .html/.md/.jsonl/.pdf with their metadata are loaded for real.
"""
from __future__ import annotations

import bz2
import csv
import dataclasses
import gzip
import json
import lzma
from pathlib import Path

import pytest
import yaml

from advisor import loaders
from advisor.task import TaskError, load_task, split_examples
from tests.conftest import EVAL, TRAIN, pdf_bytes, write_task

INSTRUCTIONS = "You are the shop assistant. Reply in one line that starts with 'Hi!' and ends with 'Bye.'"
TRAIN_ROWS = [{"input": i, "output": o} for i, o in TRAIN]
ALL_FIELDS = ["id", "input", "output", "answers", "tags", "source", "paraphrases"]


def _set(root: Path, **changes) -> Path:
    spec = yaml.safe_load((root / "task.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    (root / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def _full(rows: list[dict]) -> list[dict]:
    """Every row with every column (None where absent), as a table needs."""
    return [{k: r.get(k) for k in ALL_FIELDS} for r in rows]


def _write_csv(path: Path, rows: list[dict], rename: dict[str, str], sep: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow([rename.get(k, k) for k in ALL_FIELDS] + ["category"])  # an extra column an export carries
        for r in _full(rows):
            cells = ["" if v is None else json.dumps(v) if isinstance(v, list) else v for v in r.values()]
            w.writerow(cells + ["misc"])


def _chat(row: dict, system: bool) -> dict:
    messages = [{"role": "system", "content": INSTRUCTIONS}] if system else []
    messages.append({"role": "user", "content": row["input"]})
    if row.get("output"):
        messages.append({"role": "assistant", "content": [{"type": "text", "text": row["output"]}]})  # OpenAI parts
    return {k: v for k, v in row.items() if k not in ("input", "output")} | {"messages": messages}


def _same(a, b) -> None:
    assert a.train == b.train and a.eval == b.eval and a.instructions == b.instructions


def test_same_task_from_every_format(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    reference = load_task(write_task(tmp_path / "jsonl"))
    assert len(reference.train) == 12 and len(reference.eval) == 4

    # CSV with the export's own column names, mapped in task.yaml; the extra `category` column is ignored.
    root = write_task(tmp_path / "csv")
    _write_csv(root / "train.csv", TRAIN_ROWS, {"input": "question", "output": "answer"})
    _write_csv(root / "eval.csv", EVAL, {"input": "question", "output": "answer"})
    _set(root, train="train.csv", eval="eval.csv", columns={"input": "question", "output": "answer"})
    _same(load_task(root), reference)

    root = write_task(tmp_path / "tsv")
    _write_csv(root / "train.tsv", TRAIN_ROWS, {}, sep="\t")
    _write_csv(root / "eval.tsv", EVAL, {}, sep="\t")
    _set(root, train="train.tsv", eval="eval.tsv", columns={"input": "input", "output": "output"})
    _same(load_task(root), reference)

    root = write_task(tmp_path / "parquet")
    pq.write_table(pa.Table.from_pylist(_full(TRAIN_ROWS)), root / "train.parquet")
    pq.write_table(pa.Table.from_pylist(_full(EVAL)), root / "eval.parquet")
    _set(root, train="train.parquet", eval="eval.parquet")
    _same(load_task(root), reference)

    root = write_task(tmp_path / "datasets")
    DatasetDict({"train": Dataset.from_list(_full(TRAIN_ROWS)), "eval": Dataset.from_list(_full(EVAL))}).save_to_disk(
        str(root / "shop"))
    _set(root, train={"path": "shop", "split": "train"}, eval={"path": "shop", "split": "eval"})
    _same(load_task(root), reference)

    # Chat rows: the system message becomes the instructions, the last assistant turn the output.
    root = write_task(tmp_path / "chat")
    (root / "train.jsonl").write_text("".join(json.dumps(_chat(r, True)) + "\n" for r in TRAIN_ROWS))
    (root / "eval.jsonl").write_text("".join(json.dumps(_chat(r, False)) + "\n" for r in EVAL))
    chat = load_task(_set(root, instructions=None))
    _same(chat, reference)
    assert any("system message of 12 of 12" in n for n in chat.notices)


# A row whose text holds every separator and a quote, so an export must quote it to keep it one cell.
AWKWARD = {"input": 'Is the kettle "fast", really; or slow?', "output": "Hi! Fast, yes; 3 minutes\tflat. Bye."}


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_separator_is_sniffed_and_quoted_cells_kept(tmp_path, sep):
    """A `;` export (Excel in many locales), a tab export named .csv and quoted cells read as the JSONL does."""
    root = write_task(tmp_path / "jsonl")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS + [AWKWARD]))
    reference = load_task(root)
    root = write_task(tmp_path / "csv")
    _write_csv(root / "train.csv", TRAIN_ROWS + [AWKWARD], {"input": "Question", "output": "Ideal answer"}, sep=sep)
    _write_csv(root / "eval.csv", EVAL, {"input": "Question", "output": "Ideal answer"}, sep=sep)
    _set(root, train="train.csv", eval="eval.csv", columns={"input": "Question", "output": "Ideal answer"})
    _same(load_task(root), reference)
    assert loaders.sniff_delimiter((root / "train.csv").read_text(), ",") == sep


def test_json_arrays_and_compressed_files_read_like_jsonl(tmp_path):
    reference = load_task(write_task(tmp_path / "jsonl"))
    root = write_task(tmp_path / "json")
    (root / "train.json").write_text(json.dumps(TRAIN_ROWS, indent=2))  # an array of records
    (root / "eval.json").write_text("".join(json.dumps(r) + "\n" for r in EVAL))  # JSON Lines named .json
    _same(load_task(_set(root, train="train.json", eval="eval.json")), reference)

    root = write_task(tmp_path / "compressed")
    (root / "train.jsonl.gz").write_bytes(gzip.compress((root / "train.jsonl").read_bytes()))
    _write_csv(root / "eval.csv", EVAL, {})
    (root / "eval.csv.gz").write_bytes(gzip.compress((root / "eval.csv").read_bytes()))
    (root / "eval_updated.jsonl.xz").write_bytes(lzma.compress((root / "eval_updated.jsonl").read_bytes()))
    for name in ("train.jsonl", "eval.jsonl", "eval.csv", "eval_updated.jsonl"):
        (root / name).unlink()
    compressed = load_task(_set(root, train="train.jsonl.gz", eval="eval.csv.gz", eval_updated="eval_updated.jsonl.xz",
                                columns={"input": "input", "output": "output"}))
    _same(compressed, reference)
    assert compressed.eval_updated == reference.eval_updated

    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {
        "object.json": (b'{"data": [{"input": "q"}]}', "", "holds a JSON dict, expected an array of objects"),
        "mixed.json": (b'[{"input": "q"},\n "text"]', "item 2", "each item of the array must be a JSON object"),
        "broken.json": (b'[{"input": "q"},\n {"input": }]', "line 2", "not valid JSON"),
        "cut.jsonl.gz": (gzip.compress(b'{"input": "q"}\n')[:-8], "", "cannot be decompressed as .gz"),
        "not.csv.bz2": (b"input,output\nq,a\n", "", "cannot be decompressed as .bz2"),
        "table.parquet.gz": (b"", "", "unknown data format '.parquet.gz'"),
    }
    for name, (data, where, message) in cases.items():
        (bad / name).write_bytes(data)
        with pytest.raises(loaders.LoadError) as e:
            loaders.read_rows(bad / name)
        assert (e.value.where, e.value.message[:len(message)]) == (where, message), name
    (bad / "ok.csv.bz2").write_bytes(bz2.compress(b"input;output\nq;a\n"))
    assert loaders.read_rows(bad / "ok.csv.bz2") == [("row 1", {"input": "q", "output": "a"})]


def test_multi_turn_chat_and_hugging_face_style():
    fields, system = loaders.to_fields({"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Price of the kettle?"}, {"from": "gpt", "value": "$73"}]},
        {"messages": "conversations"})
    assert system == "Be brief." and fields["output"] == "$73"
    assert fields["input"] == "User: Hi\nAssistant: Hello\nUser: Price of the kettle?"
    with pytest.raises(ValueError, match="must end with a user turn"):
        loaders.to_fields({"messages": [{"role": "assistant", "content": "x"}]}, {})


def test_mapping_names_a_missing_column_and_bad_rows_are_all_reported(tmp_path):
    root = write_task(tmp_path / "t")
    _write_csv(root / "train.csv", TRAIN_ROWS, {"input": "question", "output": "answer"})
    _set(root, train="train.csv", columns={"input": "prompt", "output": "answer"})
    with pytest.raises(TaskError) as e:
        load_task(root)
    (p,) = [p for p in e.value.problems if p.file.endswith("train.csv")]
    assert "no column 'prompt'" in p.message and "question" in p.fix  # names the columns that exist
    rows = TRAIN_ROWS[:3] + [{"input": "no answer"}, {"output": "no question"}, TRAIN_ROWS[3]]
    _write_csv(root / "train.csv", rows, {"input": "question", "output": "answer"})
    _set(root, columns={"input": "question", "output": "answer"})
    with pytest.raises(TaskError) as e:
        load_task(root)
    found = [(p.where, p.message) for p in e.value.problems if p.file.endswith("train.csv")]
    assert found == [("row 4, field output", "training examples need an output"), ("row 5, field input", "Field required")]


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-datasets-cache"))
    root = _set(write_task(tmp_path / "t"), train={"hf": "no-such-org/no-such-dataset", "split": "train"})
    with pytest.raises(TaskError) as e:
        load_task(root)
    p = e.value.problems[0]
    assert p.file.endswith("task.yaml") and p.where.endswith("field train")
    assert "cannot load this Hugging Face dataset" in p.message and "local datasets cache" in p.fix
    root = _set(root, train={"hf": "no-such-org/x", "split": "train", "revision": "v1.0"})
    with pytest.raises(TaskError, match="revision 'v1.0'"):
        load_task(root)
    root = _set(root, train={"hf": "no-such-org/x"})
    with pytest.raises(TaskError, match="needs `split`"):
        load_task(root)
    root = _set(root, train={"path": "train.jsonl", "revision": "v1.0"})
    with pytest.raises(TaskError, match="`revision` belongs to a Hugging Face dataset") as e:
        load_task(root)
    assert e.value.problems[0].where.endswith("field train.revision")


def test_hub_dataset_revision_is_passed_and_its_rows_are_in_the_task_hash(tmp_path, monkeypatch):
    """`compare` diffs the task's files; a Hub dataset is one of them, hashed by its rows."""
    datasets = pytest.importorskip("datasets")
    from advisor.cache import hash_json

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    revisions = []
    load_dataset = datasets.load_dataset

    def recording(*args, **kwargs):  # the real loader, which also tells us the revision it was asked for
        revisions.append(kwargs.get("revision"))
        return load_dataset(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    repo = tmp_path / "shop-faq"  # a dataset repository's files, as load_dataset reads a Hub id or a local copy
    repo.mkdir()
    (repo / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS))
    root = _set(write_task(tmp_path / "t"), train={"hf": str(repo), "split": "train", "revision": "v1.0"})
    before = load_task(root)
    assert revisions == ["v1.0"] and before.train == load_task(write_task(tmp_path / "jsonl")).train
    key = f"hf:{repo}:train"
    assert key in before.files

    (repo / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS[:-1]))  # the dataset changed
    after = load_task(root)
    assert {k for k in before.files | after.files if before.files.get(k) != after.files.get(k)} == {key}
    assert hash_json(after.files) != hash_json(before.files)  # the task hash history and compare record


def test_one_file_is_split_with_seed_and_ratio_stratified_by_tag(tmp_path):
    rows = [{"id": f"r{i}", "input": f"question number {i}", "output": f"answer {i}", "tags": [tag]}
            for i, tag in enumerate(["a"] * 20 + ["b"] * 10)]
    root = write_task(tmp_path / "t")
    (root / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _set(root, train="all.jsonl", eval=None, eval_fraction=0.2)
    t = load_task(root)
    assert len(t.eval) == 6 and len(t.train) == 24
    assert sorted(t for ex in t.eval for t in ex.tags) == ["a"] * 4 + ["b"] * 2  # stratified
    assert t.split["from"] == "all.jsonl" and t.split["seed"] == 0 and t.split["eval_ids"] == [e.id for e in t.eval]
    assert not {e.id for e in t.eval} & {e.id for e in t.train}
    assert load_task(root).split == t.split  # same seed, same split
    other = load_task(_set(root, seed=1)).split["eval_ids"]
    assert other != t.split["eval_ids"]
    # The function itself: without tags it is a plain seeded hold-out of round(n * fraction) rows.
    untagged = [dataclasses.replace(ex, tags=()) for ex in t.train[:5]]
    train, held, record = split_examples(untagged, 0.4, 3)
    assert record["stratified_by"] is None and len(held) == 2 and len(train) == 3
    assert sorted(e.id for e in train + held) == sorted(e.id for e in untagged)  # each row in exactly one part
    assert split_examples(untagged, 0.4, 3)[1] == held  # same seed, same rows held out


def test_documents_in_every_format_carry_their_metadata(tmp_path):
    pytest.importorskip("pypdf")
    root = write_task(tmp_path / "t")
    docs = root / "docs"
    (docs / "kettle.md").write_text("---\ntitle: Zephyr Kettle\nurl: https://shop.example/kettle\nupdated: 2026-11-02\n"
                                    "---\n" + (docs / "kettle.md").read_text())
    (docs / "faq.html").write_text("<html><head><title>Shop FAQ</title><style>p {color: red}</style></head><body>"
                                   "<h1>FAQ</h1><p>Delivery takes <b>3 days</b>.</p><script>alert('x')</script>"
                                   "<p>Tom &amp; Jerry&#39;s</p></body></html>")
    (docs / "passages.jsonl").write_text(json.dumps({"id": "p1", "text": "Gift cards never expire.", "title": "Gift cards",
                                                     "url": "https://shop.example/gift"}) + "\n")
    (docs / "manual.pdf").write_bytes(pdf_bytes("Descale the kettle monthly."))
    by_id = {d.id: d for d in load_task(root).documents}
    kettle = by_id["kettle.md"]
    assert (kettle.title, kettle.url, kettle.updated) == ("Zephyr Kettle", "https://shop.example/kettle", "2026-11-02")
    assert kettle.text.startswith("# Zephyr Kettle") and "---" not in kettle.text
    faq = by_id["faq.html"]
    assert faq.title == "Shop FAQ" and "Delivery takes 3 days." in faq.text and "Tom & Jerry's" in faq.text
    assert "<" not in faq.text and "alert" not in faq.text and "color" not in faq.text
    assert by_id["p1"].title == "Gift cards" and by_id["p1"].url == "https://shop.example/gift"
    assert "Descale the kettle monthly." in by_id["manual.pdf"].text and by_id["manual.pdf"].title == "Kettle manual"


def test_byte_order_mark_is_handled_the_same_in_every_text_file(tmp_path):
    root = write_task(tmp_path / "t")
    for name in ("task.yaml", "train.jsonl", "eval.jsonl", "docs/kettle.md"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    _write_csv(root / "more.csv", TRAIN_ROWS, {})
    (root / "more.csv").write_bytes(b"\xef\xbb\xbf" + (root / "more.csv").read_bytes())
    t = load_task(root)
    assert t.name == "tiny" and t.train[0].input == TRAIN[0][0] and t.documents
    assert load_task(_set(root, train="more.csv", columns={"input": "input", "output": "output"})).train[0].input == TRAIN[0][0]


def test_report_cites_documents_by_their_metadata(finished_run):
    """Retrieved sources are cited by the title, date and URL a document carries (escaped in HTML)."""
    from advisor import report
    from advisor.results import DocumentMeta, load_results

    results = load_results(finished_run.out)
    meta = {"kettle.md": DocumentMeta(title="Zephyr <Kettle>", updated="2026-11-02", url="https://shop.example/kettle")}
    results = results.model_copy(update={"task": results.task.model_copy(update={"document_meta": meta})})
    sample = next(s for s in report.retrieval(results)["samples"] if s["id"] == "k1")
    rag = next(r for r in sample["retrieved"] if r["strategy"] == "rag")
    got = list(results.examples[0].answers["rag"].sources)
    assert results.examples[0].id == "k1" and got
    cite = {"kettle.md": "Zephyr <Kettle> (kettle.md) [2026-11-02, https://shop.example/kettle]"}
    assert rag["sources"] == "; ".join(cite.get(g, g) for g in got)
    assert rag["hit"] == ("yes" if "kettle.md" in got else "no")
    page = report.html(results)
    assert ("Zephyr &lt;Kettle&gt;" in page) == ("kettle.md" in got) and "Zephyr <Kettle>" not in page
