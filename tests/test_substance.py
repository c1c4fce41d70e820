"""Scores of substance on a real run: semantic style scoring, an LLM judge and its calibration, grounding.

The tiny task runs with its knowledge items scored by `contains` and an LLM judge, and
its style items by format and meaning. The judge is the embedded 135M model, which
cannot judge (it rarely even writes the verdict line), so the run must report an
uncalibrated judge, keep its verdicts out of accuracy, and say so beside its numbers.
"""
from __future__ import annotations

import json

import pytest

from advisor.results import load_results
from tests.conftest import advisor, write_task

RUBRIC = "The reply states the price or time period that the reference answer states."
HUMAN = {"k1": [("The Zephyr Kettle costs $73.", 1), ("It costs $37.", 0), ("Hi! Bye.", 0)],
         "k2": [("You can return items within 45 days.", 1), ("Returns are accepted within 30 days.", 0)]}


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("judged")
    task = write_task(root / "task", scoring={
        "method": {"all_of": ["contains", "judge"]},
        "by_tag": {"style": {"all_of": ["format", "semantic"]}},
        "format": r"^Hi! (?P<content>.+) Bye\.$",
        "judge": {"rubric": RUBRIC}},
        consistency={"samples": 0}, latency={"requests": 0})  # not what these tests check
    rows = [json.loads(line) for line in (task / "eval.jsonl").read_text().splitlines()]
    for r in rows:
        if r["id"] in HUMAN:
            r["human_scores"] = [{"answer": a, "score": s} for a, s in HUMAN[r["id"]]]
    (task / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "out"
    r = advisor("run", str(task), "--out", str(out), "-s", "few-shot", "-s", "rag", "--no-freshness", "--no-forgetting",
                "--no-history")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_the_small_model_is_an_uncalibrated_judge_and_does_not_count(judged_run):
    res = load_results(judged_run)
    j = res.judge
    assert j is not None and j.n == 5 and j.rubric == RUBRIC and not j.calibrated
    assert "SmolLM2-135M" in j.generator
    for ex in res.examples:
        if ex.id not in HUMAN:
            assert ex.method == "all of: format, semantic"
            continue
        assert ex.method == "all of: contains, judge" and ex.counted
        for name, a in ex.answers.items():
            v = a.scoring.judge
            # The judge's prompt and its reply are kept per item, with the rubric and the answer it judged.
            assert RUBRIC in v.prompt and a.text in v.prompt and ex.input in v.prompt and v.reply
            # Uncalibrated: the score is the `contains` part alone, whatever the judge said.
            assert a.score == a.scoring.parts["contains"]
    for s in res.strategies:
        assert s.judge is not None and not s.judge.counts and s.judge.accuracy.n == 2
        assert s.accuracy.n == 4


def test_the_report_says_uncalibrated_judge_beside_its_numbers(judged_run):
    res = load_results(judged_run)
    md = (judged_run / "report.md").read_text()
    html = (judged_run / "report.html").read_text()
    section = md[md.index("## What each number measures"):md.index("## Charts")]
    assert "Uncalibrated judge: its verdicts are shown but not counted" in section
    assert f"on {res.judge.n} human-scored answers" in section
    judge_rows = [line for line in section.splitlines() if line.startswith(("| few-shot |", "| rag |"))
                  and "judge" in line]
    assert len(judge_rows) == 2 and all("(uncalibrated judge)" in line for line in judge_rows)
    knowledge = next(line for line in section.splitlines() if line.startswith("| knowledge |"))
    assert "uncalibrated judge" in knowledge
    assert 'id="judge"' in html and "uncalibrated judge" in html


def test_style_items_keep_their_raw_similarity_and_rag_its_grounding(judged_run):
    res = load_results(judged_run)
    for ex in res.examples:
        if "style" in ex.tags:
            for a in ex.answers.values():
                assert -1 <= a.scoring.similarity <= 1
                assert a.score == min(a.scoring.parts.values())
    rag, few = res.strategy("rag"), res.strategy("few-shot")
    assert few.grounding is None and rag.grounding is not None
    assert rag.grounding.context_recall.n == 2  # the two knowledge items name a gold source
    # The two questions name their document's subject ("Zephyr Kettle", "return window") and top_k is 2 of 3
    # documents: retrieval finds each gold source, so each item's recall is 1 and the row's is 100%.
    recall = {ex.id: ex.answers["rag"].scoring.context_recall for ex in res.examples if ex.source}
    assert recall == {"k1": True, "k2": True} and rag.grounding.context_recall.mean == 1.0
    assert {ex.id: ex.source in ex.answers["rag"].sources for ex in res.examples if ex.source} == recall
