"""People review what decides (`advisor review`), and the judge that must not count before it is calibrated.

One real run of the tiny task (few-shot and rag on the embedded model) scores its
knowledge items by an LLM judge alone: the embedded 135M model, with no human-scored
answers, so an uncalibrated judge whose items must count nowhere. The review is driven
with real key presses in a pseudo-terminal; the verdict flips are made on copies of the
run whose scores are set by hand, so that one label decides.
"""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from advisor import history, labels as store
from advisor.results import load_results
from advisor.scoring.judge import kappa_interval
from advisor.task import TaskError, load_task
from tests.conftest import advisor, write_task

RUBRIC = "The reply states the price or time period that the reference answer states."
JUDGED = ("k1", "k2")  # knowledge items: judge alone


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, history file) of a run whose knowledge items only an uncalibrated judge scores."""
    root = tmp_path_factory.mktemp("judge-only")
    task = write_task(root / "task", scoring={"method": "judge", "by_tag": {"style": "format"},
                                              "format": r"^Hi! .+ Bye\.$", "judge": {"rubric": RUBRIC}},
                      consistency={"samples": 0}, latency={"requests": 0})
    out, hist = root / "out", root / "history.sqlite"
    r = advisor("run", str(task), "--out", str(out), "-s", "few-shot", "-s", "rag", "--no-freshness",
                "--no-forgetting", "--history", str(hist))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, hist


def copy_run(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest


# ---------------------------------------------------------------- the judge leak (issue 31, item 4)


def test_an_item_only_an_uncalibrated_judge_scored_counts_nowhere(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    res = load_results(run)
    assert res.judge is not None and not res.judge.calibrated and res.judge.n == 0
    assert [ex.id for ex in res.examples if ex.counted is False] == list(JUDGED)
    for s in res.strategies:
        assert s.accuracy.n == 2 and s.by_tag["knowledge"].n == 0 and s.by_tag["style"].n == 2
        assert s.judge is not None and s.judge.accuracy.n == 2 and not s.judge.counts
    assert [c.n for c in res.comparisons] == [2]
    # The same after a re-decision from the stored item scores (advisor roi restates every statistic).
    assert advisor("roi", str(run), "--requests-per-day", "5000", "--write").returncode == 0
    again = load_results(run)
    assert [s.accuracy.n for s in again.strategies] == [2, 2] and [c.n for c in again.comparisons] == [2]


def test_min_calibration_items_is_at_least_ten(tmp_path):
    task = write_task(tmp_path / "task", scoring={"method": "judge", "judge": {"rubric": RUBRIC,
                                                                               "min_calibration_items": 2}})
    with pytest.raises(TaskError) as e:
        load_task(task)
    assert "min_calibration_items" in str(e.value) and "10" in str(e.value)


def test_kappa_interval_is_not_degenerate_at_perfect_agreement():
    h = [1, 0] * 5
    kappa, low, high = kappa_interval(h, h, seed=0)
    assert kappa == 1 and high == 1 and low < 0.6  # 10 agreeing items do not prove a judge
    _, low_more, _ = kappa_interval(h * 4, h * 4, seed=0)
    assert low < low_more < 1  # 40 do more
    kappa, low, high = kappa_interval([1, 0, 1, 0, 1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 1, 0, 0, 1, 1], seed=0)
    assert low < kappa < high <= 1


# ---------------------------------------------------------------- the terminal review


def review_in_terminal(run: Path, keys: str, env: dict) -> str:
    """`advisor review RUN` in a pseudo-terminal, pressing each key once its card is shown; the screen's text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "advisor.cli", "review", str(run)], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    screen, pending = b"", list(keys)
    deadline = time.monotonic() + 900  # re-deciding imports torch: minutes on a loaded 2-core machine
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        # One key per prompt (a card, or "press r, w, s or q" after another key): send the next when the screen
        # shows one more prompt than keys sent.
        prompts = screen.count(b"q quit") + screen.count(b"press r, w, s or q")
        if pending and prompts > len(keys) - len(pending):
            os.write(master, pending.pop(0).encode())
        elif proc.poll() is not None and not ready:
            break
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, screen.decode(errors="replace")[-3000:]
    return screen.decode("utf-8", "replace")


def test_review_in_a_terminal_saves_every_key_and_resumes(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    env = os.environ | {"COLUMNS": "120", "ADVISOR_HISTORY": str(tmp_path / "h.sqlite"), "USER": "ana"}
    first = review_in_terminal(run, "rxwq", env)  # x is not a key: asked again
    assert "press r, w, s or q" in first and "question" in first and "shown because" in first
    saved = json.loads((run / store.FILE).read_text())["labels"]
    assert [(x["label"], x["reviewer"]) for x in saved] == [("right", "ana"), ("wrong", "ana")]
    # The deciding answers in order; the judge-scored ones are shown with the judge's verdict and reason.
    from advisor.review import deciding

    queue = deciding(load_results(run))
    assert [(x["id"], x["row"]) for x in saved] == [(q.id, q.row) for q in queue[:2]]
    assert {(i, n) for i in JUDGED for n in ("few-shot", "rag")} <= {(q.id, q.row) for q in queue}
    assert "uncalibrated judge:" in first

    second = review_in_terminal(run, "sq", env)
    assert "2 labelled already" in second
    res = load_results(run)
    assert f"{queue[2].id} · {queue[2].row}" in second  # starts at the first unlabelled answer
    labels = json.loads((run / store.FILE).read_text())["labels"]
    assert [x["label"] for x in labels] == ["right", "wrong", "skip"]
    # Kept with the run: results.json's review section, each replaced score's automatic one beside it.
    assert res.review is not None and res.review.answers == 2 and len(res.review.labels) == 3
    for x in labels[:2]:
        a = next(e for e in res.examples if e.id == x["id"]).answers[x["row"]]
        assert a.auto_score is not None and a.score == store.VALUE[x["label"]]


# ---------------------------------------------------------------- labels decide


def rescore(run: Path, scores: dict[tuple[str, str], float]) -> None:
    """Set answers' automatic scores by hand in the run's results.json (then re-decided by `advisor report`)."""
    path = run / "results.json"
    data = json.loads(path.read_text())
    for ex in data["examples"]:
        for name, a in ex["answers"].items():
            a["score"] = scores.get((ex["id"], name), 0.0)
    path.write_text(json.dumps(data))


MOVED = "verdict moved: before the labels: not enough evidence (leading: few-shot); with them: not enough evidence " \
        "(leading: rag)"


def test_a_label_that_decides_moves_the_verdict_in_report_and_roi(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    rescore(run, {("s1", "few-shot"): 1.0, ("s2", "rag"): 1.0, ("s2", "few-shot"): 1.0})  # few-shot leads 2 to 1
    assert advisor("report", str(run)).returncode == 0
    assert load_results(run).recommendation.strategy == "few-shot"
    # One person's label on one answer: few-shot's s2 is wrong, rag's s1 right: rag leads 2 to 1.
    (tmp_path / "team.csv").write_text("id,row,label,reviewer,note\ns2,few-shot,wrong,bo,says good morning\n"
                                       "s1,rag,right,bo,\n")
    r = advisor("review", str(run), "--import", str(tmp_path / "team.csv"), "--history", str(tmp_path / "h.sqlite"))
    assert r.returncode == 0, r.stderr
    assert "imported 2 label(s)" in r.stdout and MOVED in r.stdout
    res = load_results(run)
    assert res.recommendation.strategy == "rag" and res.review.before.strategy == "few-shot"
    assert res.strategy("rag").accuracy.mean == 1.0 and res.strategy("few-shot").accuracy.mean == 0.5
    shown = advisor("report", str(run))
    md = (run / "report.md").read_text()
    assert "People reviewed 2 eval items" in md and MOVED in md
    assert "People reviewed 2 eval items" in shown.stdout and 'id="review"' in (run / "report.html").read_text()
    roi = advisor("roi", str(run), "--requests-per-day", "100")
    assert roi.returncode == 0 and "leading: rag" in roi.stdout and "People reviewed 2" in roi.stdout


def test_labels_round_trip_through_csv_and_a_bad_line_is_named(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    data = load_results(run).model_dump(mode="json")
    labels = [store.label("k1", "rag", "right", "ana", "states $73, \"quoted\""), store.label("s2", "few-shot", "skip")]
    store.save(run, data, labels)
    assert advisor("review", str(run), "--export", str(tmp_path / "out.csv")).returncode == 0
    other = tmp_path / "other"
    shutil.copytree(judged_run[0], other)
    assert advisor("review", str(other), "--import", str(tmp_path / "out.csv")).returncode == 0
    assert json.loads((other / store.FILE).read_text())["labels"] == labels

    bad = tmp_path / "bad.csv"
    bad.write_text("id,row,label\nk1,rag,right\nk2,gpt-9,wrong\n")
    fresh = tmp_path / "fresh"
    shutil.copytree(judged_run[0], fresh)
    r = advisor("review", str(fresh), "--import", str(bad))
    assert r.returncode == 2 and f"{bad}: line 3: row 'gpt-9' is not in this run" in r.stderr
    assert not (fresh / store.FILE).exists()  # nothing half-written
    bad.write_text("id,label\nk1,right\n")
    r = advisor("review", str(fresh), "--import", str(bad))
    assert r.returncode == 2 and "line 1: the header lacks row" in r.stderr
    bad.write_text("id,row,label\nk1,rag,maybe\n")
    assert "line 2: label 'maybe'" in advisor("review", str(fresh), "--import", str(bad)).stderr


def test_labels_become_human_scores_the_task_loads(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    res = load_results(run)
    store.save(run, res.model_dump(mode="json"), [store.label("k1", "rag", "right"), store.label("k1", "few-shot", "wrong")])
    assert advisor("review", str(run), "--to-human-scores", str(tmp_path / "hs.jsonl")).returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "hs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["k1"]
    by_row = {a.text: a for a in (res.examples[0].answers[n] for n in ("rag", "few-shot"))}
    assert {h["answer"]: h["score"] for h in rows[0]["human_scores"]} == {
        res.examples[0].answers["rag"].text: 1.0, res.examples[0].answers["few-shot"].text: 0.0} and by_row
    # They are what an eval row's human_scores field takes.
    task = write_task(tmp_path / "task")
    evals = [json.loads(line) for line in (task / "eval.jsonl").read_text().splitlines()]
    evals[0]["human_scores"] = rows[0]["human_scores"]
    (task / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    assert len(load_task(task).eval[0].human_scores) == 2


def test_people_label_every_row_of_a_judged_item_and_it_counts(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    data = load_results(run).model_dump(mode="json")
    store.save(run, data, [store.label("k1", "few-shot", "right"), store.label("k1", "rag", "wrong"),
                           store.label("k2", "rag", "right")])  # k2's few-shot answer is not labelled
    assert advisor("report", str(run)).returncode == 0
    res = load_results(run)
    assert [s.accuracy.n for s in res.strategies] == [3, 3] and res.strategy("few-shot").by_tag["knowledge"].n == 1
    judge = next(m for m in res.review.agreement if m.method == "judge")
    assert judge.n == 3 and 0 <= judge.agreement <= 1


def test_history_records_how_many_items_people_reviewed(judged_run, tmp_path):
    assert history.list_runs(judged_run[1])[-1].reviewed == 0  # as `advisor run` recorded it
    run = copy_run(judged_run[0], tmp_path)
    hist = tmp_path / "h.sqlite"
    run_id = history.record(hist, history.record_from_results(load_results(run), "", run.resolve()))
    (tmp_path / "team.csv").write_text("id,row,label\ns1,rag,right\nk2,rag,wrong\nk2,few-shot,skip\n")
    r = advisor("review", str(run), "--import", str(tmp_path / "team.csv"), "--history", str(hist))
    assert r.returncode == 0 and f"history: run {run_id} now records 2 reviewed item(s)" in r.stdout
    assert history.get_run(hist, run_id).reviewed == 2


def test_prediction_powered_accuracy_from_a_random_sample(judged_run, tmp_path):
    run = copy_run(judged_run[0], tmp_path)
    res = load_results(run)
    from advisor.review import random_sample

    sample = random_sample(res, 2)
    assert len(sample) == 4 and {x.sample for x in sample} == {"random"}
    labels = [store.label(x.id, x.row, "right", sample="random") for x in sample]
    store.save(run, res.model_dump(mode="json"), labels)
    assert advisor("report", str(run)).returncode == 0
    got = load_results(run)
    for name in ("few-shot", "rag"):
        auto = [ex.answers[name].auto_score if ex.answers[name].auto_score is not None else ex.answers[name].score
                for ex in got.examples if ex.counted is not False or all(a.auto_score is not None
                                                                         for a in ex.answers.values())]
        errors = [1.0 - next(e for e in got.examples if e.id == x.id).answers[name].auto_score
                  for x in sample if x.row == name]
        ppi = got.review.ppi[name]
        assert ppi.n == 2 and ppi.mean == pytest.approx(np.clip(np.mean(auto) + np.mean(errors), 0, 1))
        assert ppi.low <= ppi.mean <= ppi.high
