"""`advisor run` end to end on a tiny task with the real models, then `report` and `roi`."""
from __future__ import annotations

import json

from tests.conftest import advisor


def test_run_writes_every_output(finished_run):
    out, r = finished_run.out, finished_run.proc
    for name in ("results.json", "examples.csv", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    names = [s["name"] for s in results["strategies"]]
    assert names == ["few-shot", "rag", "lora", "lora+rag"]
    for s in results["strategies"]:
        assert 0 <= s["accuracy"]["low"] <= s["accuracy"]["mean"] <= s["accuracy"]["high"] <= 1
        assert s["tokens"]["prompt_mean"] > 0 and s["economics"]["cost_per_request"] > 0
        assert s["latency"]["p50_seconds"] > 0
    lora = next(s for s in results["strategies"] if s["name"] == "lora")
    assert lora["setup"]["train_seconds"] > 0 and lora["setup"]["knowledge_in_weights"]
    # The default budget (fast) warm-starts lora+rag's adapter from lora's, says so, and charges both trainings.
    assert results["run"]["budget"] == {"name": "fast", "filled": {"finetune.retrieval_aware": "warm-start",
                                                                   "finetune.lora_dropout": 0.0},
                                        "left_out": results["run"]["budget"]["left_out"]}
    assert "separate adapter" in results["run"]["budget"]["left_out"] and "dropout" in results["run"]["budget"]["left_out"]
    lora_rag = next(s for s in results["strategies"] if s["name"] == "lora+rag")["setup"]
    assert lora_rag["retrieval_aware"] == "warm-start" and lora_rag["started_from"] == lora["setup"]["adapter"]
    assert lora_rag["train_seconds"] > lora["setup"]["train_seconds"]
    assert "Budget fast" in r.stdout and "estimated time" in r.stderr
    assert "| budget | fast (set finetune.retrieval" in (out / "report.md").read_text()
    assert results["run"]["models"]["generator"]["dtype"] in ("bfloat16", "float32")
    rag = next(s for s in results["strategies"] if s["name"] == "rag")
    assert rag["retrieval"]["n"] == 2 and 0 <= rag["retrieval"]["hit_at_k"] <= 1
    rec = results["recommendation"]
    assert rec["strategy"] in names and rec["reasons"]
    assert len(results["comparisons"]) == 6
    # The terminal verdict panel. The tiny task has 4 eval items: too few for a recommendation (issue 18).
    assert results["recommendation"]["status"] == "not enough evidence"
    assert "Not enough evidence" in r.stdout and "not a recommendation" in r.stdout
    csv_lines = (out / "examples.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 4 * 4


def test_freshness_reads_the_answers_before_the_update_from_the_cache(finished_run):
    """Before the update the experiment's question is each row's own prompt, answered in the row's eval call."""
    log = (finished_run.out / "advisor.log").read_text()
    experiments = log[log.rindex("lora+rag: done"):].splitlines()[1:]
    freshness = [line for line in experiments if "answered 1 prompts" in line]  # the tiny task changes one fact
    assert len(freshness) == 2 * 4, "\n".join(experiments)  # before and after the update, for each of four rows
    before = freshness[0::2]
    assert all("0 generated, 1 from the cache" in line for line in before), "\n".join(freshness)


def test_report_rerenders_without_models(finished_run):
    out = finished_run.out
    (out / "report.html").unlink()
    r = advisor("report", str(out))
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["recommendation"]["strategy"] in html and "<script" not in html


def test_roi_recomputes_for_another_volume(finished_run):
    out = finished_run.out
    r = advisor("roi", str(out), "--requests-per-day", "5")
    assert r.returncode == 0, r.stderr
    assert "Not enough evidence" in r.stdout  # 4 eval items decide nothing, at any volume
    before = json.loads((out / "results.json").read_text())
    assert before["assumptions"]["requests_per_day"] == 2000  # not written without --write
    r = advisor("roi", str(out), "--requests-per-day", "5", "--write")
    after = json.loads((out / "results.json").read_text())
    assert after["assumptions"]["requests_per_day"] == 5
    assert after["strategies"][0]["economics"]["total_cost"] < before["strategies"][0]["economics"]["total_cost"]


def test_roi_with_a_price_of_a_correct_answer_decides_in_money(finished_run, tmp_path):
    """`advisor roi --value-per-correct` re-decides from the stored item scores in money. The tiny run has 4 eval
    items, too few for any verdict, so a copy of its results gets 40 (the first item's answers, rescored): the
    dearest row right on 33, the cheapest on 32, disagreeing on 7 (a gap inside the noise), the others on 20."""
    results = json.loads(json.dumps(finished_run.results))
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))

    def decided(*prices: str) -> dict:
        r = advisor("roi", str(run), "--knowledge-changes-per-month", "0", *prices, "--write")
        assert r.returncode == 0, r.stderr
        return json.loads((run / "results.json").read_text())

    # The rows' costs as this test prices them: no knowledge changes (so no retrains), at the run's volume.
    results = decided("--unpriced")
    costs = {s["name"]: (s["economics"]["total_cost"], s["complexity"]) for s in results["strategies"]}
    cheap, dear = min(costs, key=costs.get), max(costs, key=costs.get)
    examples = []
    for i in range(40):
        ex = json.loads(json.dumps(results["examples"][0])) | {"id": f"x{i}", "source": None, "cluster": None}
        for name, answer in ex["answers"].items():
            right = {cheap: i < 29 or i >= 37, dear: i < 33}.get(name, i < 20)
            answer["score"] = float(right)
        examples.append(ex)
    results["examples"], results["task"]["n_eval"] = examples, 40
    (run / "results.json").write_text(json.dumps(results))

    unpriced = decided("--unpriced")
    assert unpriced["recommendation"]["value"] is None
    low = decided("--value-per-correct", "0")  # only the costs count: the cheapest row, and nothing is uncertain
    rec = low["recommendation"]
    assert (rec["strategy"], rec["status"]) == (cheap, "recommended") and rec["value"]["rows"][cheap]["p_best"] == 1
    assert sum(r["p_best"] for r in rec["value"]["rows"].values()) == 1
    assert "Value:" in (run / "report.md").read_text() and "ROI" in (run / "report.md").read_text()
    assert all(s["economics"]["roi"] is not None for s in low["strategies"])
    high = decided("--value-per-correct", "1000", "--cost-per-error", "10")  # quality decides, and 40 items do not
    rec = high["recommendation"]
    assert (rec["strategy"], rec["status"]) == (dear, "not enough evidence")
    assert high["assumptions"]["cost_per_error"] == 10 and rec["value"]["evsi"]
    assert "Value of more eval items to this decision" in (run / "report.md").read_text()
    # The same prices with a loss tolerated of half the stake (economics.loss_tolerance): the pick stands.
    loose = decided("--value-per-correct", "1000", "--cost-per-error", "10", "--loss-tolerance", "0.5")
    rec = loose["recommendation"]
    assert (rec["strategy"], rec["status"]) == (dear, "recommended") and loose["assumptions"]["loss_tolerance"] == 0.5
    assert rec["value"]["loss_tolerance"] == 0.5 and "(50 accuracy points' worth" in (run / "report.md").read_text()
    assert advisor("roi", str(run), "--unpriced", "--value-per-correct", "1").returncode != 0


def test_report_on_missing_run_is_a_clear_error(tmp_path):
    r = advisor("report", str(tmp_path))
    assert r.returncode == 2 and "results.json" in r.stderr and "Traceback" not in r.stderr
