"""Bad input never becomes a traceback: every malformed task ends in a TaskError naming where.

Property-based (hypothesis) over the task file, the example readers and the
document readers; a second part checks the CLI's exit code 2 and that nothing is
written into the output folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from advisor.cli import app
from advisor.task import TaskError, load_task
from tests.conftest import PLANTED_SECRETS, write_task

TRIED = {"task_yaml": 0, "jsonl": 0, "documents": 0}
FIELDS = ["name", "description", "instructions", "instructions_file", "train", "eval", "documents", "scoring",
          "economics", "models", "seed", "strategies", "generation", "rag", "finetune", "bogus"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fresh(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    if root.exists():
        shutil.rmtree(root)
    return write_task(root)


def _loads_or_task_error(root: Path) -> None:
    try:
        load_task(root)
    except TaskError as e:
        assert e.file and e.message  # says which file and what is wrong


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=json_values)
@example(field="instructions_file", value="\x00")  # found by hypothesis: pathlib raised ValueError
def test_any_field_value_is_loaded_or_named(tmp_path, field, value):
    root = _fresh(tmp_path, "t")
    spec = yaml.safe_load((root / "task.yaml").read_text())
    spec[field] = value
    (root / "task.yaml").write_text(yaml.safe_dump(spec))
    TRIED["task_yaml"] += 1
    _loads_or_task_error(root)


@SETTINGS
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_task_file_bytes(tmp_path, raw):
    root = _fresh(tmp_path, "t")
    (root / "task.yaml").write_bytes(raw)
    TRIED["task_yaml"] += 1
    try:
        load_task(root)
    except TaskError:
        pass


@SETTINGS
@given(which=st.sampled_from(["train.jsonl", "eval.jsonl"]),
       lines=st.lists(json_values.map(json.dumps) | st.text(max_size=60) | st.just('{"input": ""}'), max_size=5))
def test_any_jsonl_rows(tmp_path, which, lines):
    root = _fresh(tmp_path, "t")
    (root / which).write_text("\n".join(lines))
    TRIED["jsonl"] += 1
    _loads_or_task_error(root)


@SETTINGS
@given(name=st.sampled_from(["a.md", "b.txt", "c.jsonl"]), raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_document_bytes(tmp_path, name, raw):
    root = _fresh(tmp_path, "t")
    (root / "docs" / name).write_bytes(raw)
    TRIED["documents"] += 1
    _loads_or_task_error(root)


def test_cli_exit_2_and_nothing_written(tmp_path):
    cases = {
        "malformed yaml": lambda r: (r / "task.yaml").write_text("name: [\n"),
        "wrong type": lambda r: (r / "task.yaml").write_text((r / "task.yaml").read_text() + "seed: abc\n"),
        "missing file": lambda r: (r / "train.jsonl").unlink(),
        "escaping path": lambda r: (r / "task.yaml").write_text((r / "task.yaml").read_text().replace("train.jsonl", "../../x.jsonl")),
        "binary eval": lambda r: (r / "eval.jsonl").write_bytes(b"\x00\xff" * 10),
        "huge line": lambda r: (r / "eval.jsonl").write_text("{" + "x" * 200_000 + "\n"),
        "empty eval": lambda r: (r / "eval.jsonl").write_text(""),
        "duplicate ids": lambda r: (r / "eval.jsonl").write_text('{"id": 1, "input": "a", "answers": ["b"]}\n' * 2),
    }
    runner = CliRunner()
    for name, damage in cases.items():
        root = _fresh(tmp_path, "cli")
        damage(root)
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        result = runner.invoke(app, ["run", str(root), "--out", str(out)])
        assert result.exit_code == 2, (name, result.output)
        assert "error:" in result.output and "Traceback" not in result.output, name
        assert not out.exists(), name
    print(f"\nbad inputs tried: {TRIED} + {len(cases)} CLI cases")


def test_no_secret_reaches_any_output_log_or_cache(finished_run):
    """Keys in the environment of a real run appear in no file it wrote: results, CSV, reports, log, caches."""
    places = [finished_run.out, Path(os.environ["ADVISOR_CACHE"])]
    files = [p for place in places for p in place.rglob("*") if p.is_file()]
    assert any(p.name == "advisor.log" for p in files) and any(p.suffix == ".sqlite" for p in files)
    for path in files:
        data = path.read_bytes()
        for name, value in PLANTED_SECRETS.items():
            assert value.encode() not in data, f"{name}'s value found in {path}"
    for stream in (finished_run.proc.stdout, finished_run.proc.stderr):
        assert not any(v in stream for v in PLANTED_SECRETS.values())


def test_nothing_unpickles_or_evaluates_loaded_data():
    """Artifacts load from safetensors, FAISS, JSON and SQLite only; YAML only through the safe loader."""
    import re

    forbidden = re.compile(r"\b(torch\.load|pickle|cloudpickle|joblib\.load|allow_pickle=True|yaml\.load\(|"
                           r"yaml\.unsafe_load|eval\(|exec\()")
    root = Path(__file__).resolve().parents[1]
    sources = list((root / "advisor").rglob("*.py")) + list((root / "strategies").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            assert not forbidden.search(code.replace(".eval()", "")), f"{path}:{n}: {line.strip()}"
