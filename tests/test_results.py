"""results.json against its declared schema (advisor.results), on the results of a real tiny run."""
from __future__ import annotations

import copy
import json
import math

import pytest

from advisor.results import (SCHEMA_FILE, SCHEMA_VERSION, Results, ResultsError, json_schema, load_results,
                             write_results)
from tests.conftest import advisor


@pytest.fixture
def raw(finished_run) -> dict:
    """results.json of the shared run as a dict, as the run wrote it."""
    return copy.deepcopy(finished_run.results)


def write_raw(folder, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data, indent=1))


def test_the_run_writes_the_declared_schema_and_it_round_trips(raw, tmp_path):
    assert raw["schema_version"] == SCHEMA_VERSION
    results = Results.model_validate(raw)
    # every key the run wrote is in the model, and the model writes nothing the run did not
    assert json.loads(json.dumps(results.model_dump(mode="json"))) == raw
    write_results(results, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert load_results(tmp_path) == results
    assert load_results(tmp_path / "results.json") == results  # the file itself works as well as its folder
    # a key that exists only for some rows is left out of the others (not written as null)
    assert results.strategy("rag").setup.training is None and "training" not in raw["strategies"][1]["setup"]
    assert results.strategy("lora").setup.training.epochs_run == 1


def test_nan_round_trips(raw, tmp_path):
    raw["strategies"][0]["accuracy"] = {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    write_results(Results.model_validate(raw), tmp_path)
    assert '"mean": NaN' in (tmp_path / "results.json").read_text()
    loaded = load_results(tmp_path)
    assert math.isnan(loaded.strategies[0].accuracy.mean) and loaded.strategies[0].accuracy.n == 0


def test_another_schema_version_names_both_versions(raw, tmp_path):
    raw["schema_version"] = SCHEMA_VERSION + 1
    write_raw(tmp_path, raw)
    with pytest.raises(ResultsError) as e:
        load_results(tmp_path)
    msg = str(e.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in msg and f"reads version {SCHEMA_VERSION}" in msg
    assert "re-run `advisor run`" in msg and f"advisor {raw['advisor_version']}" in msg
    del raw["schema_version"]  # a file from before versioning
    write_raw(tmp_path, raw)
    with pytest.raises(ResultsError, match=rf"has no schema version, this advisor reads version {SCHEMA_VERSION}"):
        load_results(tmp_path)


def test_invalid_json_names_the_line(raw, tmp_path):
    text = json.dumps(raw, indent=1).splitlines()
    text[2] = text[2].rstrip(",") + " oops,"
    (tmp_path / "results.json").write_text("\n".join(text))
    with pytest.raises(ResultsError, match=r"results\.json: line 3: not valid JSON"):
        load_results(tmp_path)


def test_a_wrong_field_names_its_path(raw, tmp_path):
    raw["strategies"][1]["accuracy"]["mean"] = "high"
    write_raw(tmp_path, raw)
    with pytest.raises(ResultsError, match=r"field strategies\.1\.accuracy\.mean: Input should be a valid number"):
        load_results(tmp_path)
    raw["strategies"][1]["accuracy"]["mean"] = 0.5
    raw["examples"][0]["answers"]["rag"]["confidence"] = 0.9  # drift: a key nobody declared
    write_raw(tmp_path, raw)
    with pytest.raises(ResultsError, match=r"field examples\.0\.answers\.rag\.confidence: unknown field"):
        load_results(tmp_path)


def test_missing_results_says_to_run_first(tmp_path):
    with pytest.raises(ResultsError, match=r"no results\.json here; run `advisor run"):
        load_results(tmp_path)


def test_report_refuses_another_version_and_writes_nothing(raw, tmp_path):
    raw["schema_version"] = SCHEMA_VERSION + 1
    write_raw(tmp_path, raw)
    r = advisor("report", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert f"schema version {SCHEMA_VERSION + 1}" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_committed_json_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text() == json_schema(), (
        "advisor/results.schema.json is out of date: run `python -m advisor.results` and commit it "
        "(and bump SCHEMA_VERSION if old files no longer fit)")
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["required"][0] == "schema_version"
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
