"""`advisor init --from` on data as people export it, and the warnings validate and --dry-run give before a run.

Real files in tmp_path (CSV, `;`-separated CSV, gzipped CSV, JSONL), the real CLI, the real task loader.
"""
from __future__ import annotations

import csv
import gzip
import json

import pytest
import yaml

from advisor import guess
from advisor.recommend import MIN_EVAL_ITEMS
from advisor.task import Example, load_task
from tests.conftest import advisor, write_task

CATEGORIES = ["billing", "shipping", "returns", "account", "product"]


def quiz_rows(n: int) -> list[tuple[str, str, str]]:
    """A support export: a question, an ideal answer that is a whole sentence, a category."""
    return [(f"How do I sort out my {CATEGORIES[i % 5]} problem number {i}?",
             f"Open Settings, choose {CATEGORIES[i % 5].title()} and follow step {i} shown on that page.",
             CATEGORIES[i % 5]) for i in range(n)]


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def guessed(header, rows):
    return guess.guess_columns([(f"row {k}", dict(zip(header, r))) for k, r in enumerate(rows, 1)])


# ---------------------------------------------------------------- which column holds what


@pytest.mark.parametrize("header, want", [
    (["Question", "Ideal answer", "Category"], {"input": "Question", "output": "Ideal answer", "tags": "Category"}),
    (["Customer question", "agent_reply", "topic"], {"input": "Customer question", "output": "agent_reply",
                                                     "tags": "topic"}),
    (["ticket_text", "resolution", "intentLabel"], {"input": "ticket_text", "output": "resolution",
                                                    "tags": "intentLabel"}),
    (["customerMessage", "agentResponse", "Type"], {"input": "customerMessage", "output": "agentResponse",
                                                    "tags": "Type"}),
])
def test_header_words_and_synonyms_find_the_columns(header, want):
    g = guessed(header, quiz_rows(20))
    assert g.mapping == want and g.sure
    assert "the name has the word" in g.reasons["output"]


def test_an_id_column_and_a_label_column_are_told_apart_from_the_text():
    rows = [(f"T-{1000 + i}", q, a, c) for i, (q, a, c) in enumerate(quiz_rows(20))]
    g = guessed(["ticket_id", "ticket_text", "resolution", "queue"], rows)
    assert g.mapping == {"input": "ticket_text", "output": "resolution", "tags": "queue", "id": "ticket_id"}
    kinds = {c.name: c.kind for c in g.columns}
    assert kinds == {"ticket_id": "id", "ticket_text": "text", "resolution": "text", "queue": "label"}


def test_contents_decide_when_the_names_say_nothing_and_the_guess_says_it_is_unsure():
    # Answers first, questions second: the question marks, not the order, pick the input.
    rows = [(a, q, c, str(i * 1.5)) for i, (q, a, c) in enumerate(quiz_rows(20))]
    g = guessed(["col1", "col2", "col3", "col4"], rows)
    assert g.mapping["input"] == "col2" and g.mapping["output"] == "col1" and g.mapping["tags"] == "col3"
    assert not g.sure and "by contents" in g.reasons["input"]
    assert "col4" not in g.mapping.values()  # numbers are neither a question, an answer nor a tag here


def test_a_classifier_export_maps_the_label_to_the_output():
    rows = [(q, c) for q, _, c in quiz_rows(20)]
    assert guessed(["text", "label"], rows).mapping == {"input": "text", "output": "label"}


# ---------------------------------------------------------------- init --from, end to end


@pytest.mark.parametrize("kind", ["comma", "semicolon", "gzip"])
def test_init_from_an_export_builds_a_task_that_can_reach_a_verdict(tmp_path, kind):
    header = ["Question", "Ideal answer", "Category"]
    plain = write_csv(tmp_path / "quiz.csv", header, quiz_rows(126), ";" if kind == "semicolon" else ",")
    data = plain
    if kind == "gzip":
        data = tmp_path / "quiz.csv.gz"
        data.write_bytes(gzip.compress(plain.read_bytes()))
    folder = tmp_path / "my-task"
    r = advisor("init", str(folder), "--from", str(data), "--yes")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert "input <- Question" in said and "output <- Ideal answer" in said and "tags <- Category" in said
    assert "--yes: took the guess above" in said and "scoring: semantic, because the answers are sentences" in said
    assert f"holding out 30 of 126 rows" in " ".join(r.stderr.split())
    t = load_task(folder)
    assert len(t.eval) >= MIN_EVAL_ITEMS and len(t.train) + len(t.eval) == 126
    assert t.spec.scoring.method == "semantic"
    text = " ".join((folder / "task.yaml").read_text().replace("#", " ").split())
    assert "Chosen by advisor init: the answers are sentences" in text and "tell two strategies apart" in text
    v = advisor("validate", str(folder))
    assert v.returncode == 0 and "warning" not in v.stderr, v.stderr
    assert f"{len(t.eval)} eval" in v.stdout


def test_too_few_rows_are_said_before_anything_runs(tmp_path):
    data = write_csv(tmp_path / "small.csv", ["Question", "Ideal answer", "Category"], quiz_rows(40))
    r = advisor("init", str(tmp_path / "small"), "--from", str(data), "--yes")
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "too few rows for a verdict: 40 rows" in err and "add 10 rows or more" in err
    held = len(load_task(tmp_path / "small").eval)
    assert held < MIN_EVAL_ITEMS and f"eval has {held} items, the verdict needs at least {MIN_EVAL_ITEMS}" in err
    v = advisor("validate", str(tmp_path / "small"))
    assert v.returncode == 0 and "can only end in \"not enough evidence\"" in " ".join(v.stderr.split())


def test_when_unsure_the_person_picks_the_columns(tmp_path):
    rows = [(a, q, c) for q, a, c in quiz_rows(60)]
    data = write_csv(tmp_path / "export.csv", ["field_a", "field_b", "field_c"], rows)
    r = advisor("init", str(tmp_path / "picked"), "--from", str(data), input="field_b\nfield_a\n-\n")
    assert r.returncode == 0, r.stderr
    assert "pick the columns" in r.stdout and "first values" in r.stdout  # the table of columns was shown
    spec = yaml.safe_load((tmp_path / "picked" / "task.yaml").read_text())
    assert spec["columns"] == {"input": "field_b", "output": "field_a"}
    same = advisor("init", str(tmp_path / "same"), "--from", str(data), input="field_a\nfield_a\n-\n")
    assert same.returncode == 2 and "different columns" in same.stderr and not (tmp_path / "same").exists()
    unsure = advisor("init", str(tmp_path / "yes"), "--from", str(data), "--yes")
    assert unsure.returncode == 0 and "did not settle it" in " ".join(unsure.stdout.split())


# ---------------------------------------------------------------- scoring that fits


def examples(outputs: list[str]) -> list[Example]:
    return [Example(id=str(i), input=f"q{i}", output=o) for i, o in enumerate(outputs)]


def test_the_scoring_method_follows_the_form_of_the_answers():
    labels = [CATEGORIES[i % 3] for i in range(30)]
    assert guess.choose_scoring(examples(labels))[0] == "exact"
    prices = [f"${10 + i}" for i in range(30)]
    assert guess.choose_scoring(examples(prices))[0] == "contains"
    objects = [json.dumps({"sku": f"A{i}", "qty": i}) for i in range(30)]
    assert guess.choose_scoring(examples(objects))[0] == "json_fields"
    method, why = guess.choose_scoring(examples([a for _, a, _ in quiz_rows(30)]))
    assert method == "semantic" and "median 12 words" in why


def test_validate_warns_when_contains_cannot_match_the_references(tmp_path):
    """The rule: exact/contains need the whole reference in the reply. A reference with more words than
    max_new_tokens can never be there (each word is at least one token); when more than half the items' shortest
    references have more than SENTENCE_WORDS words, the method would score almost nothing."""
    root = write_task(tmp_path / "t", scoring={"method": "contains"})
    rows = [{"id": f"e{i}", "input": q, "output": a} for i, (q, a, _) in enumerate(quiz_rows(MIN_EVAL_ITEMS))]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = advisor("validate", str(root))
    err = " ".join(r.stderr.split())
    assert r.returncode == 0 and f"{MIN_EVAL_ITEMS} of {MIN_EVAL_ITEMS + 1} items scored by exact/contains have " \
                                 f"references of more than {guess.SENTENCE_WORDS} words" in err, r.stderr
    assert "can never score" not in err  # 12-word references, max_new_tokens 16: possible, if unlikely
    write_task(root, scoring={"method": "contains"}, generation={"max_new_tokens": 8})
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "can never score" in " ".join(advisor("validate", str(root)).stderr.split())
    short = [{"id": f"e{i}", "input": q, "answers": [c]} for i, (q, _, c) in enumerate(quiz_rows(MIN_EVAL_ITEMS))]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short))
    quiet = advisor("validate", str(root))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


def test_dry_run_before_any_run_estimates_from_the_tokenizer_and_a_probe(tmp_path):
    root = write_task(tmp_path / "t")
    r = advisor("run", str(root), "--dry-run", "--history", str(tmp_path / "empty.sqlite"),
                "-s", "zero-shot", "-s", "few-shot")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "not measured" not in out and "an estimate before any run of 'tiny'" in out and "probe of 4 prompts" in out
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.strip().startswith(("zero-shot", "few-shot"))}
    zero, few = (float(rows[n][2].replace(",", "")) for n in ("zero-shot", "few-shot"))
    assert few > zero > 0  # few-shot's prompt carries two train examples besides the same question
    assert all(float(rows[n][3].replace(",", "")) > 0 and float(rows[n][-1]) > 0 for n in rows)
    assert "eval has 4 items" in " ".join(r.stderr.split())  # the tiny task is below the evidence minimum
