"""`advisor run` in CI: gates, exit codes, JUnit XML, --dry-run, --version, and MLflow and W&B logging.

Real runs of the tiny task (--limit 8, zero-shot and few-shot rows, no experiments).
The first run measures; the gate runs set their thresholds from what it measured, so
one must pass and one must fail on any machine (same task, seed and model give the
same numbers, and the answers come from the generation cache).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from advisor import history
from tests.conftest import advisor, write_task

# Small enough for a busy 2-core machine; test_history.py runs the same (one xdist group), so one test session
# answers each prompt once (the generation cache) and later runs mostly reuse it.
# Token F1 scoring: 8 tokens rarely hold a whole right answer, but F1 still gives graded, non-zero scores.
SMALL = {"consistency": {"samples": 0, "items": 0}, "latency": {"requests": 1},
         "generation": {"max_new_tokens": 8, "batch_size": 8}, "scoring": {"method": "f1"}}
ROWS = ["-s", "zero-shot", "-s", "few-shot", "--no-freshness", "--no-forgetting", "--limit", "8"]


def no_wandb_account(root: Path) -> dict:
    """The environment of a machine without W&B credentials (W&B then runs offline), its folders under root."""
    return {"WANDB_API_KEY": None, "WANDB_MODE": None, "WANDB_DIR": None, "WANDB_PROJECT": None,
            "NETRC": str(root / "no.netrc"), **{name: str(root / name.lower())
                                                for name in ("WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR")}}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One run that records history and logs to a real local MLflow store and to W&B (offline)."""
    root = tmp_path_factory.mktemp("ci")
    task = write_task(root / "task", **SMALL)
    tracking = f"sqlite:///{root / 'mlflow.db'}"  # a real local store; its artifacts go to ./mlruns under cwd
    r = advisor("run", str(task), "--out", str(root / "out"), "--history", str(root / "h.sqlite"),
                "--report-to", "mlflow", "--report-to", "wandb", "--junit-xml", str(root / "none.xml"), *ROWS,
                env={"MLFLOW_TRACKING_URI": tracking, **no_wandb_account(root)}, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, task, tracking, r, json.loads((root / "out" / "results.json").read_text())


def _cases(path: Path) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}


def test_a_run_without_gates_writes_an_empty_passing_suite(measured):
    """--junit-xml with no gate: a well-formed report with no test case and no failure, named after the task."""
    root = measured[0]
    tree = ET.parse(root / "none.xml").getroot()
    assert tree.tag == "testsuites" and (tree.get("tests"), tree.get("failures")) == ("0", "0")
    suites = tree.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "tiny" and suites[0].get("failures") == "0"
    assert list(tree.iter("testcase")) == []


def test_gates_from_the_measured_numbers_pass(measured):
    root, task, _, _, results = measured
    acc = {s["name"]: s["accuracy"]["mean"] for s in results["strategies"]}
    junit = root / "pass.xml"
    assert max(acc.values()) > 0  # so the --fail-under gates below are ones that could fail
    r = advisor("run", str(task), "--out", str(root / "pass"), "--no-history", *ROWS,
                "--fail-under", f"zero-shot={acc['zero-shot']}", "--fail-under", f"few-shot={acc['few-shot']}",
                "--junit-xml", str(junit))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cases = _cases(junit)
    assert len(cases) == 2 and not any(c.find("failure") is not None for c in cases.values())


def test_verdict_gates_on_a_recommendation(measured):
    """--expect and --max-cost-per-request against a verdict that recommends (the tiny task itself has too few
    eval items for one: below), checked on the measured results."""
    from advisor.gates import Gates, evaluate
    from advisor.results import Results

    results = json.loads(json.dumps(measured[4]))
    verdict = results["strategies"][0]["name"]
    results["recommendation"].update(status="recommended", strategy=verdict)
    r = Results.model_validate(results)
    cost = r.strategy(verdict).economics.cost_per_request
    other = next(s.name for s in r.strategies if s.name != verdict)
    passed = evaluate(Gates(expect=verdict, max_cost_per_request=cost * 1.01), r)
    assert [g.passed for g in passed] == [True, True] and passed[0].message == f"recommended {verdict}"
    failed = evaluate(Gates(expect=other, max_cost_per_request=cost / 2), r)
    assert [g.passed for g in failed] == [False, False]
    assert failed[0].message == f"recommended {verdict}, expected {other}"


def test_a_fragility_gate_requires_a_minimum(measured):
    """--gate fragility>=N: a verdict that fewer item scores could overturn fails, with the items named."""
    from advisor.gates import Gates, evaluate, parse_gate
    from advisor.results import Results

    results = json.loads(json.dumps(measured[4]))
    f = results["recommendation"]["fragility"]
    assert f is not None and f["text"]
    results["recommendation"]["fragility"] = {"count": 1, "changes": "status", "text": "One item decides this verdict",
                                              "items": [{"id": "q1", "row": "few-shot", "from": 1.0, "to": 0.0}]}
    r = Results.model_validate(results)
    assert parse_gate(["fragility>=3"]) == 3
    (failed,) = evaluate(Gates(min_fragility=3), r)
    assert not failed.passed and failed.name == "fragility>=3" and "One item decides" in failed.message
    (passed,) = evaluate(Gates(min_fragility=1), r)
    assert passed.passed


def test_gates_beyond_the_measured_numbers_fail_with_exit_1(measured):
    """4 eval items are not enough evidence for a verdict: a gate on the verdict fails, saying so."""
    root, task, _, _, results = measured
    assert results["recommendation"]["status"] == "not enough evidence"
    leader = results["recommendation"]["strategy"]
    gates = ["--expect", leader, "--max-cost-per-request", "1"]
    below_one = [s for s in results["strategies"] if s["accuracy"]["mean"] < 1]
    if below_one:
        s = below_one[0]
        gates += ["--fail-under", f"{s['name']}={min(1.0, s['accuracy']['mean'] + 0.01)}"]
    junit = root / "fail.xml"
    r = advisor("run", str(task), "--out", str(root / "fail"), "--no-history", *ROWS, *gates, "--junit-xml", str(junit))
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert (root / "fail" / "report.html").exists()  # a failed gate still leaves the report to look at
    cases = _cases(junit)
    failures = {name: c.find("failure") for name, c in cases.items()}
    assert len(cases) == len(gates) // 2 and all(f is not None for f in failures.values())
    message = failures[f"expect {leader}"].get("message")
    assert message.startswith("no row is recommended: not enough evidence (only 4 eval items")
    assert message.endswith(f"expected {leader}")
    assert failures["max-cost-per-request 1"].get("message").startswith("no row is recommended")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == str(len(cases)) and suite.get("name") == "tiny"
    assert "FAIL expect" in " ".join(r.stdout.split())


def test_bad_gates_are_bad_input_before_any_model_runs(tmp_path):
    tiny_task_dir = write_task(tmp_path / "task", **SMALL)
    for gate, says in ((["--fail-under", "few-shot=1.5"], "ACCURACY in [0, 1]"),
                       (["--fail-under", "few-shot"], "expected ROW=ACCURACY"),
                       (["--expect", "lora"], "which this run does not have"),
                       (["--gate", "fragility>3"], "expected fragility>=N")):
        r = advisor("run", str(tiny_task_dir), "--out", str(tmp_path / "o"), *ROWS, *gate)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "o").exists()
    usage = advisor("run", str(tiny_task_dir), "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_version_and_help_name_the_exit_codes():
    from advisor import __version__

    v = advisor("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"advisor {__version__}"
    h = advisor("run", "--help")
    text = " ".join(h.stdout.split())
    assert h.returncode == 0 and "1 a gate" in text and "3 model/endpoint/hardware failure" in text and "130" in text


def test_dry_run_scales_the_measured_run_and_runs_nothing(measured, tmp_path):
    root, task, _, _, results = measured
    r = advisor("run", str(task), "--out", str(tmp_path / "dry"), "--history", str(root / "h.sqlite"),
                "--dry-run", *ROWS)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "dry").exists() and "nothing was run" in r.stdout
    out = " ".join(r.stdout.split())
    assert "basis: run 1 of" in out and "the same task files" in out
    # 4 eval items + 1 paraphrase + 1 freshness question (answered in the row's call, also with --no-freshness)
    # + 0 consistency samples + 1 latency probe = 7 requests per row
    few = next(line for line in r.stdout.splitlines() if line.strip().startswith("few-shot"))
    s = next(s for s in results["strategies"] if s["name"] == "few-shot")
    tokens = 7 * (s["tokens"]["prompt_mean"] + s["tokens"]["completion_mean"])
    assert few.split()[1] == "7" and f"{tokens:,.0f}" in few


def test_mlflow_store_holds_params_metrics_verdict_and_report(measured):
    from mlflow.tracking import MlflowClient

    root, _, tracking, r, results = measured
    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name("advisor/tiny")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id in r.stdout
    assert run.data.params["seed"] == str(results["run"]["seed"])
    assert run.data.params["prompting.few_shot_k"] == "2" and run.data.params["n_eval"] == "4"
    assert run.data.tags["advisor.verdict"] == results["recommendation"]["strategy"]
    assert run.data.tags["advisor.history_id"] == "1"
    for s in results["strategies"]:
        assert run.data.metrics[f"{s['name']}/accuracy"] == pytest.approx(s["accuracy"]["mean"])
        assert run.data.metrics[f"{s['name']}/cost_per_request"] == pytest.approx(s["economics"]["cost_per_request"])
        assert f"{s['name']}/latency_p50_s" in run.data.metrics
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "results.json"} <= names
    (root / "dl").mkdir()
    local = client.download_artifacts(run.info.run_id, "report.html", str(root / "dl"))
    assert Path(local).read_text() == (root / "out" / "report.html").read_text()


def test_wandb_offline_run_holds_params_metrics_verdict_and_report(measured):
    from tests.test_tracking import wandb_run  # here, not above: test_tracking imports this module

    root, _, _, r, results = measured
    run = wandb_run(root / "out")
    assert f"wandb sync {run['log'].parent}" in " ".join(r.stdout.split())
    assert run["config"]["seed"] == results["run"]["seed"] and run["config"]["prompting_few_shot_k"] == 2
    assert run["summary"]["advisor_verdict"] == results["recommendation"]["strategy"]
    for s in results["strategies"]:
        key = s["name"].replace("-", "_")
        assert run["summary"][f"{key}/accuracy"] == pytest.approx(s["accuracy"]["mean"])
        assert run["config"][f"{key}/name"] == s["name"]
    assert run["artifacts"]["report.html"].read_bytes() == (root / "out" / "report.html").read_bytes()


def test_a_failing_tracker_exits_3_after_every_output_is_written(measured):
    """The store cannot be opened: exit 3 naming the tracker, with the reports, history and JUnit file written."""
    root, task, _, _, results = measured
    (root / "a-file").write_text("")  # MLflow's store would be a folder inside a file
    out, junit, hist = root / "untracked", root / "untracked.xml", root / "untracked.sqlite"
    r = advisor("run", str(task), "--out", str(out), "--history", str(hist), "--report-to", "mlflow", *ROWS,
                "--fail-under", "zero-shot=0", "--junit-xml", str(junit),
                env={"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'a-file' / 'mlflow.db'}"}, cwd=root)
    err = " ".join(r.stderr.split())
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "error: --report-to: could not log the run to mlflow (" in err and "Traceback" not in err, err
    assert {"results.json", "report.html"} <= {p.name for p in out.iterdir()}
    assert list(_cases(junit)) == ["fail-under zero-shot=0"]
    assert [run.task_name for run in history.list_runs(hist)] == ["tiny"]


def test_ctrl_c_exits_130(tmp_path):
    tiny_task_dir = write_task(tmp_path / "task", **SMALL)
    # As from a terminal: a test session started in the background (`make test &`) has SIGINT ignored, and an
    # ignored signal is inherited through exec, so without this the run would never see the Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-m", "advisor.cli", "run", str(tiny_task_dir), "--out", str(tmp_path / "o"),
                             "--no-history", *ROWS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "o" / "advisor.log").exists() and time.time() < deadline:  # the run has started
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]


def test_cache_info_and_clear_keep_the_history_unless_asked(tmp_path):
    from advisor import history

    cache = tmp_path / "cache"
    (cache / "adapters" / "abc").mkdir(parents=True)
    (cache / "adapters" / "abc" / "adapter.safetensors").write_bytes(b"\0" * 3 * 2**20)
    (cache / "generations.sqlite").write_bytes(b"\0" * 1024)
    history.connect(cache / history.FILE).close()  # a real (empty) history store
    env = {"ADVISOR_CACHE": str(cache)}
    info = advisor("cache", "info", env=env)
    assert info.returncode == 0 and "adapters" in info.stdout and "3.0 MiB" in info.stdout, info.stdout
    refused = advisor("cache", "clear", input="n\n", env=env)
    assert refused.returncode == 0 and (cache / "adapters").exists()
    cleared = advisor("cache", "clear", "--yes", env=env)
    assert cleared.returncode == 0 and "history is kept" in cleared.stdout
    assert sorted(p.name for p in cache.iterdir()) == [history.FILE]
    advisor("cache", "clear", "--yes", "--include-history", env=env)
    assert list(cache.iterdir()) == []
