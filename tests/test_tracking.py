"""`--report-to mlflow|wandb` with every sample row name, read back from what each tracker wrote.

The trackers read only results: those of one small real run of the tiny task, its row copied
under every sample row name and plug-in names with odd characters (each with its own accuracy,
so a mixed-up row shows). MLflow logs to a real sqlite:/// store in a temp dir; W&B runs
offline (no credentials, no network) and its transaction log (`run-<id>.wandb`, what
`wandb sync` uploads) is read back record by record.
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from advisor import tracking
from advisor.results import Results, load_results, write_results
from advisor.task import load_task
from tests.conftest import PLANTED_SECRETS, advisor, write_task
from tests.test_ci import SMALL  # the same small runs: one xdist group, one generation cache

SAMPLE_ROWS = ["zero-shot", "few-shot", "few-shot-dynamic", "rag", "few-shot+rag", "lora", "lora+rag"]
# Plug-in names: odd characters, two that clean to the same name, one that a sample row cleans to, one that
# differs from a sample row only in case (W&B compares names without case), and one MLflow reads as a path.
PLUGIN_ROWS = ["my row/α*?", "my row/β*?", "few-shot_rag", "LoRA+RAG", "..", "émoji 🙂 row"]
ROWS = SAMPLE_ROWS + PLUGIN_ROWS
WANDB_NAME = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")  # what W&B sorts and filters (GraphQL names)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """(run folder, results with every row name, the task's settings): one real run, its row copied per name."""
    root = tmp_path_factory.mktemp("tracking")
    task = write_task(root / "task", **SMALL)
    r = advisor("run", str(task), "--out", str(root / "run"), "--no-history", "-s", "zero-shot",
                "--no-freshness", "--no-forgetting", "--limit", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    data = load_results(root / "run").model_dump(mode="json")
    (adapter := root / "adapters" / "abc123").mkdir(parents=True)  # an adapter folder, as a LoRA row's set-up has
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    rows = []
    for i, name in enumerate(ROWS):
        row = json.loads(json.dumps(data["strategies"][0]))
        row["name"] = name
        row["accuracy"] |= {"mean": 0.5 + i / 100, "low": 0.4 + i / 100, "high": 0.6 + i / 100}
        if name == "lora":
            row["setup"]["adapter"] = str(adapter)
        rows.append(row)
    data["strategies"] = rows
    data["recommendation"]["strategy"] = "lora+rag"
    results = Results.model_validate(data)
    out = root / "out"
    out.mkdir()
    shutil.copy(root / "run" / "report.html", out / "report.html")
    write_results(results, out)
    settings = load_task(task).spec.model_dump(include={"generation", "prompting", "rag", "finetune", "consistency"})
    return out, results, settings


def test_row_names_are_valid_and_distinct_for_every_tracker():
    for tracker, names in tracking.NAMES.items():
        keys = tracking.row_names(ROWS, names)
        assert len({names.same(k) for k in keys.values()}) == len(ROWS), (tracker, keys)
        assert all(names.part(k) == k for k in keys.values())  # cleaning a clean name changes nothing
        assert tracking.row_names(list(reversed(ROWS)), names) == keys  # the order of the rows does not matter
        assert all(len(k) <= names.max_row for k in tracking.row_names(["x" * 300, "x" * 301], names).values())
    mlflow = tracking.row_names(ROWS, tracking.NAMES["mlflow"])
    assert [mlflow[r] for r in SAMPLE_ROWS if r != "few-shot+rag"] == [
        "zero-shot", "few-shot", "few-shot-dynamic", "rag", "lora", "lora_rag"]
    assert mlflow["few-shot_rag"] == "few-shot_rag" and mlflow["few-shot+rag"].startswith("few-shot_rag_")
    assert mlflow[".."].startswith("_..")
    wandb = tracking.row_names(ROWS, tracking.NAMES["wandb"])
    assert all(WANDB_NAME.match(k) for k in wandb.values()), wandb
    assert wandb["zero-shot"] == "zero_shot" and wandb["rag"] == "rag"
    # `lora+rag` and `LoRA+RAG` are one name to W&B: both cleaned, so both keep their own hash
    assert wandb["lora+rag"].startswith("lora_rag_") and wandb["LoRA+RAG"].startswith("LoRA_RAG_")
    alone = tracking.row_names(SAMPLE_ROWS, tracking.NAMES["wandb"])
    assert alone["lora+rag"] == "lora_rag" and alone["few-shot+rag"] == "few_shot_rag"


def test_mlflow_store_holds_every_row(logged, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    out, results, settings = logged
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the sqlite store's artifacts go to ./mlruns
    for name, value in PLANTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    said = []
    tracking.report(["mlflow"], results, out, settings, 7, said.append)
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("advisor/tiny").experiment_id])
    assert said == [f"logged to mlflow: run {run.info.run_id}"]
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    keys = {v: k.removesuffix("/name") for k, v in params.items() if k.endswith("/name")}  # row -> its key
    assert set(keys) == set(ROWS) and len(set(keys.values())) == len(ROWS)
    assert keys["lora+rag"] == "lora_rag" and keys["few-shot"] == "few-shot"
    for s in results.strategies:
        assert metrics[f"{keys[s.name]}/accuracy"] == pytest.approx(s.accuracy.mean)
        assert metrics[f"{keys[s.name]}/accuracy_high"] == pytest.approx(s.accuracy.high)
        assert metrics[f"{keys[s.name]}/cost_per_request"] == pytest.approx(s.economics.cost_per_request)
        assert params[f"{keys[s.name]}/model"] == s.model
    assert tags["advisor.verdict"] == "lora+rag" and tags["advisor.history_id"] == "7"
    assert params["prompting.few_shot_k"] == "2" and params["seed"] == str(results.run.seed)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "results.json", "adapters"} <= names
    assert [a.path for a in client.list_artifacts(run.info.run_id, "adapters/abc123")] == [
        "adapters/abc123/adapter_config.json"]
    local = client.download_artifacts(run.info.run_id, "results.json", str(tmp_path))
    assert Path(local).read_bytes() == (out / "results.json").read_bytes()
    stored = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]  # the store and its artifacts
    assert not [secret for secret in PLANTED_SECRETS.values() for data in stored if secret.encode() in data]


# ------------------------------------------------------------------------------------------------ W&B offline

def wandb_records(path: Path):
    """The records of a W&B transaction log: a LevelDB log (32 KiB blocks of records, each a 7-byte header:
    crc32, length, type FULL/FIRST/MIDDLE/LAST) of `wandb_internal_pb2.Record` protobufs, after a 7-byte file
    header. wandb 0.31 ships no Python reader (its Go core reads the file for `wandb sync`)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:7] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    i, pending = 7, b""
    while i + 7 <= len(data):
        if block - i % block < 7:  # a block's tail too short for a header is padding
            i += block - i % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[i:i + 7])
        chunk = data[i + 7:i + 7 + length]
        assert crc == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), "corrupt record"
        i += 7 + length
        pending += chunk
        if kind in (1, 4):  # FULL, or the LAST piece of a record split across blocks
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_run(folder: Path) -> dict:
    """What one offline W&B run logged: config, summary, artifacts (path -> staged copy), as `wandb sync` reads it."""
    [log] = folder.glob("wandb/offline-run-*/run-*.wandb")
    found = {"config": {}, "summary": {}, "artifacts": {}, "log": log}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["project"] = record.run.project
            found["config"] |= {u.key: json.loads(u.value_json) for u in record.run.config.update}
        elif kind == "config":
            found["config"] |= {u.key: json.loads(u.value_json) for u in record.config.update}
        elif kind == "summary":
            found["summary"] |= {u.key: json.loads(u.value_json) for u in record.summary.update if u.key}
        elif kind == "artifact":
            found["artifacts"] |= {c.path: Path(c.local_path) for c in record.artifact.manifest.contents}
    return found


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No W&B credentials, mode or project; its own folders in a temp dir; planted secrets in the environment."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    for name, value in PLANTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_wandb_offline_holds_every_row(logged, wandb_env, tmp_path):
    out, results, settings = logged
    folder = tmp_path / "out"
    shutil.copytree(out, folder)
    said = []
    tracking.report(["wandb"], results, folder, settings, 7, said.append)
    run = wandb_run(folder)
    assert said[0].startswith("logged to wandb: run ") and "offline: upload with `wandb sync" in said[0]
    assert run["project"] == "advisor"
    config, summary = run["config"], run["summary"]
    keys = {v: k.removesuffix("/name") for k, v in config.items() if k.endswith("/name")}  # row -> its key
    assert set(keys) == set(ROWS) and len({k.casefold() for k in keys.values()}) == len(ROWS)
    assert keys["zero-shot"] == "zero_shot" and keys["few-shot+rag"].startswith("few_shot_rag_")
    for s in results.strategies:
        assert summary[f"{keys[s.name]}/accuracy"] == pytest.approx(s.accuracy.mean)
        assert summary[f"{keys[s.name]}/cost_per_request"] == pytest.approx(s.economics.cost_per_request)
        assert config[f"{keys[s.name]}/model"] == s.model
    assert all(WANDB_NAME.match(part) for key in (*config, *summary) for part in key.split("/") if key != "_wandb")
    assert summary["advisor_verdict"] == "lora+rag" and summary["advisor_history_id"] == "7"
    assert config["prompting_few_shot_k"] == 2 and config["seed"] == results.run.seed
    artifacts = run["artifacts"]
    assert set(artifacts) == {"report.html", "results.json", "adapters/abc123/adapter_config.json"}
    assert artifacts["report.html"].read_bytes() == (folder / "report.html").read_bytes()
    assert artifacts["results.json"].read_bytes() == (folder / "results.json").read_bytes()
    written = [p for p in wandb_env.rglob("*") if p.is_file() and "wandb" in str(p.relative_to(wandb_env))]
    for secret in PLANTED_SECRETS.values():  # nothing from the environment reaches what W&B writes or uploads
        assert not [p for p in written if secret.encode() in p.read_bytes()], secret


def test_wandb_mode_from_the_environment_wins(logged, wandb_env, tmp_path, monkeypatch):
    out, results, settings = logged
    monkeypatch.setenv("WANDB_MODE", "disabled")
    said = []
    tracking.report(["wandb"], results, out, settings, None, said.append)
    assert len(said) == 1 and not (out / "wandb").exists()


def test_a_failing_tracker_is_named_and_does_not_stop_the_others(logged, wandb_env, tmp_path, monkeypatch):
    out, results, settings = logged
    folder = tmp_path / "out"
    shutil.copytree(out, folder)
    monkeypatch.chdir(tmp_path)  # an MLflow store's artifacts would go to ./mlruns
    (tmp_path / "a-file").write_text("")  # a store MLflow cannot open: its folder is a file
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    said = []
    with pytest.raises(tracking.TrackerError, match=r"could not log the run to mlflow \(") as e:
        tracking.report(["mlflow", "wandb"], results, folder, settings, None, said.append)
    assert "wandb" not in str(e.value) and [line.split(":")[0] for line in said] == ["logged to wandb"]
    assert wandb_run(folder)["summary"]["zero_shot/accuracy"] == pytest.approx(results.strategy("zero-shot").accuracy.mean)


def test_an_unknown_tracker_is_bad_input_before_any_model_runs(tmp_path):
    with pytest.raises(tracking.TrackingError, match="known trackers: mlflow, wandb"):
        tracking.check(["mlflow", "neptune"])
    task = write_task(tmp_path / "task", **SMALL)
    r = advisor("run", str(task), "--out", str(tmp_path / "o"), "--report-to", "neptune")
    assert r.returncode == 2 and "--report-to 'neptune'" in r.stderr and not (tmp_path / "o").exists()
