"""Task loading: the sample is valid; bad files get a message naming file, place and problem."""
from __future__ import annotations

import json

import pytest
import yaml

from advisor.task import TaskError, load_task
from tests.conftest import advisor, write_task


def test_sample_task_loads():
    t = load_task("data/support")
    assert len(t.train) >= 100 and len(t.eval) >= 30 and len(t.documents) >= 5
    assert {"knowledge", "style"} <= {tag for ex in t.eval for tag in ex.tags}
    assert len(t.instructions.split()) > 300  # the long style guide prompting pays for on every request


def test_tiny_task_loads(tiny_task_dir):
    t = load_task(tiny_task_dir)
    assert t.name == "tiny" and len(t.train) == 12 and len(t.eval) == 4
    assert {d.id for d in t.documents} == {"kettle.md", "toaster.md", "returns.md"}
    assert t.eval[0].references == ("$73",)


def _edit_yaml(root, **changes):
    spec = yaml.safe_load((root / "task.yaml").read_text())
    spec.update(changes)
    (root / "task.yaml").write_text(yaml.safe_dump(spec))


@pytest.mark.parametrize("change, where, words", [
    ({"trian": "train.jsonl"}, "field trian", "unknown field"),
    ({"economics": {"requests_per_day": -5}}, "field economics.requests_per_day", "greater than 0"),
    ({"train": "missing.jsonl"}, "train", "does not exist"),
    ({"eval": "../../etc/passwd"}, "eval", "outside the task folder"),
    ({"scoring": {"method": "regex"}}, "scoring.regex", "needs a pattern"),
    ({"scoring": {"method": "contains", "format": "("}}, "scoring.format", "invalid regex"),
    ({"rag": {"chunk_tokens": 32, "chunk_overlap": 40}}, "rag.chunk_overlap", "smaller"),
    ({"scoring": {"method": {"all_of": ["format", "sematic"]}, "format": "^x$"}}, "scoring.method.all_of.1",
     "unknown scoring method 'sematic'"),
    ({"scoring": {"method": "contains", "by_tag": {"style": {"all_of": ["format", "judge"]}}, "format": "^x$"}},
     "scoring.judge", "needs scoring.judge with a `rubric`"),
    ({"scoring": {"method": "judge", "judge": {"rubric": "right fact", "generator": "big"}}}, "scoring.judge.generator",
     "not in models.generators"),
    ({"scoring": {"method": "judge", "judge": {"generator": "default"}}}, "scoring.judge.rubric", "Field required"),
    ({"scoring": {"method": {"all_of": ["format"]}, "format": "^x$"}}, "scoring.method.all_of", "at least 2"),
])
def test_bad_task_fields(tiny_task_dir, change, where, words):
    _edit_yaml(tiny_task_dir, **change)
    with pytest.raises(TaskError) as e:
        load_task(tiny_task_dir)
    assert where in e.value.where and words in e.value.message
    assert "task.yaml" in e.value.file


def test_bad_yaml_names_line(tiny_task_dir):
    (tiny_task_dir / "task.yaml").write_text("name: x\ntrain: [unclosed\neval: e.jsonl\n")
    with pytest.raises(TaskError) as e:
        load_task(tiny_task_dir)
    assert e.value.where.startswith("line ") and "invalid YAML" in e.value.message


@pytest.mark.parametrize("content, where, words", [
    ('{"input": "a", "output": "b"}\n{not json}\n', "line 2", "not valid JSON"),
    ('{"input": "a", "output": "b", "colour": 1}\n', "line 1, field colour", "unknown field"),
    ('{"input": "a"}\n', "line 1, field output", "need an output"),
    ('{"id": "x", "input": "a", "output": "b"}\n{"id": "x", "input": "c", "output": "d"}\n', "line 2, field id", "duplicate"),
    ("\n\n", "", "has no examples"),
])
def test_bad_train_rows(tiny_task_dir, content, where, words):
    (tiny_task_dir / "train.jsonl").write_text(content)
    with pytest.raises(TaskError) as e:
        load_task(tiny_task_dir)
    assert e.value.file.endswith("train.jsonl") and e.value.where == where and words in e.value.message


def test_binary_and_non_utf8_files(tiny_task_dir):
    (tiny_task_dir / "eval.jsonl").write_bytes(b'{"input": "caf\xe9", "answers": ["x"]}\n')
    with pytest.raises(TaskError, match="not valid UTF-8"):
        load_task(tiny_task_dir)
    (tiny_task_dir / "eval.jsonl").write_bytes(b"\x00\x01\x02")
    with pytest.raises(TaskError, match="binary"):
        load_task(tiny_task_dir)


def test_eval_source_must_be_a_document(tiny_task_dir):
    rows = [json.loads(line) for line in (tiny_task_dir / "eval.jsonl").read_text().splitlines()]
    rows[0]["source"] = "nope.md"
    (tiny_task_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskError, match="nope.md"):
        load_task(tiny_task_dir)


def test_cli_validate_exit_codes(tiny_task_dir, tmp_path):
    ok = advisor("validate", str(tiny_task_dir))
    assert ok.returncode == 0 and "ok" in ok.stdout
    _edit_yaml(tiny_task_dir, seed="not a number")
    bad = advisor("validate", str(tiny_task_dir))
    assert bad.returncode == 2
    assert "task.yaml" in bad.stderr and "field seed" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_run_bad_task_writes_nothing(tiny_task_dir, tmp_path):
    _edit_yaml(tiny_task_dir, train="nowhere.jsonl")
    out = tmp_path / "out"
    r = advisor("run", str(tiny_task_dir), "--out", str(out))
    assert r.returncode == 2 and "nowhere.jsonl" in r.stderr and not out.exists()


def test_init_scaffold_is_valid(tmp_path):
    r = advisor("init", str(tmp_path / "new"))
    assert r.returncode == 0, r.stderr
    t = load_task(tmp_path / "new")
    assert t.train and t.eval and t.documents
    write_task(tmp_path / "again")  # init refuses a non-empty folder
    r = advisor("init", str(tmp_path / "again"))
    assert r.returncode == 2 and "not empty" in r.stderr


def test_json_fields_needs_json_references_and_names_the_item(tiny_task_dir):
    """Items scored by json_fields must have a JSON object to compare fields with; the error names file and item."""
    _edit_yaml(tiny_task_dir, scoring={"method": "contains", "by_tag": {"style": "json_fields"}})
    with pytest.raises(TaskError) as e:
        load_task(tiny_task_dir)
    problems = [str(p) for p in e.value.problems]
    assert len(problems) == 2 and all("eval.jsonl" in p and "json_fields" in p for p in problems), problems
    assert "example 's1', field output" in problems[0] and "JSON object" in problems[0]
    rows = [json.loads(line) for line in (tiny_task_dir / "eval.jsonl").read_text().splitlines()]
    for r in rows:
        if "style" in r["tags"]:
            r["output"] = json.dumps({"reply": r["output"], "mood": "kind"})
    (tiny_task_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_task(tiny_task_dir).spec.scoring.uses("json_fields")


def test_human_scores_are_read_and_range_checked(tiny_task_dir):
    rows = [json.loads(line) for line in (tiny_task_dir / "eval.jsonl").read_text().splitlines()]
    rows[0]["human_scores"] = [{"answer": "It costs $73.", "score": 1}, {"answer": "It costs $37.", "score": 0}]
    (tiny_task_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_task(tiny_task_dir).eval[0].human_scores == (("It costs $73.", 1.0), ("It costs $37.", 0.0))
    rows[0]["human_scores"][1]["score"] = 3
    (tiny_task_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskError) as e:
        load_task(tiny_task_dir)
    assert e.value.where == "line 1, field human_scores.1.score" and "less than or equal to 1" in e.value.message
