"""Facts that must agree: a cosine that passes is not enough when negation, names or contrasting words differ.

The issue's contradictions (MiniLM cosine 0.74-0.90, threshold 0.7) must come out "not the same";
on the labelled pair set (tests/data/meaning_pairs.jsonl, built from the sample references) no
paraphrase may be lost by any rule and every comparer's precision must rise. Faithfulness reads
citation markers, cut-off numbers and bare answers, and refuses a sentence worded like its passage
that contradicts it. Real MiniLM throughout.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from advisor.report import item_detail
from advisor.results import AnswerResult, ItemScoring
from advisor.scoring import Tools, agree, score_item
from advisor.scoring.grounding import faithfulness, support
from advisor.scoring.meaning import contradiction, polarity
from advisor.scoring.semantic import Similarity
from advisor.task import AllOf, Example, ScoringSpec, load_task
from benchmarks.meaning_pairs import judge_all, load_pairs, precision_recall

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ScoringSpec(method=AllOf(all_of=["format", "semantic"]),
                      format=r"^Hello from Nimbus! (?P<content>.+) Anything else I can help with\?$")


def nimbus(text: str) -> str:
    return f"Hello from Nimbus! {text} Anything else I can help with?"


def reference(task: str, item: str) -> Example:
    return next(ex for ex in load_task(ROOT / "data" / task).eval if ex.id == item)


def section(doc: str, title: str) -> str:
    """A retrieved passage as rag carries it: one section of a support document, its heading first."""
    text = (ROOT / "data/support/docs" / doc).read_text()
    return re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", text, re.S | re.M).group().strip()


@pytest.fixture(scope="module")
def similarity(embedder) -> Similarity:
    return Similarity(embedder)


# ---------------------------------------------------------------- the issue's examples

ISSUE = [  # (answer, reference, the rule that must refuse it)
    ("Thank you for being with us. Yes, I can offer you a free device, and I am happy to help with anything else.",
     "Thank you for being with us. I cannot offer free devices, but I am happy to help with anything else.",
     "negation"),
    ("Sorry, you cannot reach a person by phone or by live chat in the Nimbus app.",
     "Of course, you can reach our team by phone or by live chat in the Nimbus app.", "negation"),
    ("The capital of Denmark is Oslo.", "The capital of Denmark is Copenhagen.", "names"),
    ("Pigs say moo.", "Pigs say oink.", "contrast"),
]


@pytest.mark.parametrize("answer, ref, rule", ISSUE)
def test_the_issues_contradictions_pass_the_cosine_and_are_not_the_same(similarity, answer, ref, rule):
    spec = ScoringSpec(method="semantic")
    assert similarity.cosine(answer, ref) >= spec.semantic_threshold  # the cosine alone would call them the same
    assert not similarity.same_meaning(answer, ref, spec.semantic_threshold)
    s = score_item(answer, Example(id="x", input="q", output=ref), spec, Tools(lambda: similarity.embedder))
    assert s.value == 0.0
    (refusal,) = s.details["contradictions"]
    assert refusal["comparer"] == "semantic" and refusal["rule"] == rule
    assert ItemScoring(parts=s.parts, **s.details).contradictions[0].rule == rule  # results.json holds why


def test_the_names_that_differ_are_named_in_the_results_and_the_report(similarity):
    found = contradiction("The capital of Denmark is Oslo.", "The capital of Denmark is Copenhagen.")
    assert found.rule == "names" and found.differ == ("Oslo", "Copenhagen")
    s = score_item("The capital of Denmark is Oslo.", Example(id="q08", input="q", output="The capital of Denmark is "
                   "Copenhagen."), ScoringSpec(method="semantic"), Tools(lambda: similarity.embedder))
    answer = AnswerResult(text="The capital of Denmark is Oslo.", score=s.value, format_ok=None, sources=(),
                          prompt_tokens=0, completion_tokens=0, scoring=ItemScoring(parts=s.parts, **s.details))
    assert "semantic refused: names (Oslo, Copenhagen)" in item_detail(None, answer)


def test_a_support_style_item_keeps_the_issue_answer_wrong(similarity):
    """s14 scored as the support task scores it: format and semantic, the greeting and closing left out."""
    ex = reference("support", "s14")
    s = score_item(nimbus(ISSUE[0][0]), ex, SUPPORT, Tools(lambda: similarity.embedder))
    assert s.parts == {"format": 1.0, "semantic": 0.0}
    assert s.details["contradictions"][0]["rule"] == "negation" and "offer" in s.details["contradictions"][0]["differ"]
    good = nimbus("Thanks for your loyalty. I can't give away free devices, but I'm glad to help with anything else.")
    assert score_item(good, ex, SUPPORT, Tools(lambda: similarity.embedder)).value == 1.0


def test_agreement_and_json_free_text_use_the_same_rule(similarity):
    tools = Tools(lambda: similarity.embedder)
    e = Example(id="x", input="q", output="Thank you for being with us. I cannot offer free devices.")
    assert not agree("I cannot offer free devices.", "Yes, I can offer you a free device.", e,
                     ScoringSpec(method="contains"), tools)
    spec = ScoringSpec(method="json_fields", free_text_fields=["reply"])
    ref = '{"intent": "order", "city": "Leeds", "reply": "Thank you, we\'ll get 2 mugs ready for Leeds."}'
    got = '{"intent": "order", "city": "Leeds", "reply": "Thank you, we\'ll get 2 mugs ready for York."}'
    s = score_item(got, Example(id="f", input="q", output=ref), spec, tools)
    assert s.details["fields"] == {"intent": True, "city": True, "reply": False}
    assert s.details["contradictions"] == [{"comparer": "json_fields:reply", "rule": "names",
                                            "differ": ["York", "Leeds"]}]


# ---------------------------------------------------------------- polarity without the embedder

@pytest.mark.parametrize("a, b", [
    ("Phone support is not open on Sundays.", "Phone support is closed on Sundays."),     # a negated antonym
    ("No problem, we'll cancel the mugs.", "Sure, we'll cancel the mugs."),                # a phrase, no denial
    ("You can't return it without the box for free.", "Returns without the box have a fee."),  # two in a clause
    ("Sorry, I can't help with jobs; I can only help with Nimbus devices.", "I can only help with Nimbus devices."),
])
def test_phrases_and_double_negation_are_not_contradictions(a, b):
    assert contradiction(a, b) is None


def test_an_answer_word_no_and_its_negation_count_once():
    assert polarity("No, we don't ship to Canada.").odd
    assert contradiction("No, we don't ship to Canada.", "Yes, we ship to Canada.").rule == "negation"


# ---------------------------------------------------------------- the labelled pair set

@pytest.fixture(scope="module")
def judged(embedder):
    return judge_all(Tools(lambda: embedder), load_pairs())


def test_the_pair_set_has_every_class_and_the_issues_examples():
    pairs = load_pairs()
    assert len(pairs) >= 80
    classes = {p["class"] for p in pairs}
    assert classes == {"paraphrase", "negation contradiction", "antonym", "swapped name", "unrelated",
                       "terse correct answer", "passage dump"}
    texts = {(p["a"], p["b"]) for p in pairs}
    assert ("The capital of Denmark is Oslo.", "The capital of Denmark is Copenhagen.") in texts
    assert ("Pigs say moo.", "Pigs say oink.") in texts


def test_no_paraphrase_in_the_set_is_lost_by_any_rule(judged):
    lost = [(name, p["id"], p["a"]) for name, rows in judged.items() for p, before, after in rows
            if p["label"] == "same" and before and not after]
    assert not lost


def test_every_comparer_is_more_precise_after_and_recalls_no_less(judged):
    for name, rows in judged.items():
        p_before, r_before = precision_recall([(p, b) for p, b, _ in rows])
        p_after, r_after = precision_recall([(p, a) for p, _, a in rows])
        assert p_after > p_before and r_after >= r_before, name


def test_the_negation_contradictions_of_the_set_are_all_refused(judged):
    called_same = [(name, p["id"]) for name, rows in judged.items() for p, _, after in rows
                   if p["class"] == "negation contradiction" and after]
    assert not called_same


# ---------------------------------------------------------------- faithfulness

def test_rags_verbatim_passage_dump_is_supported(similarity):
    """k13: the reply pastes the passage with its "[1] (source: ...)" marker and is cut off after "by 3"."""
    passage = section("thermostat.md", "Eco Mode")
    dump = ("[1] (source: thermostat.md > Eco Mode) ## Eco Mode Eco Mode lowers the temperature by 4 degrees in "
            "winter when nobody is home. In summer, Eco Mode raises the temperature by 3")
    assert faithfulness(dump, [passage], SUPPORT, similarity) == 1.0


def test_a_terse_right_answer_is_supported_by_the_passage_that_states_it(similarity):
    passage = section("camera.md", "Video storage")
    assert faithfulness("The answer is: 3 days", [passage], SUPPORT, similarity) == 1.0
    assert faithfulness("The answer is: 5 days", [passage], SUPPORT, similarity) == 0.0


def test_a_sentence_worded_like_its_passage_that_contradicts_it_is_not_supported(similarity):
    eco = section("thermostat.md", "Eco Mode")
    wrong = "Eco Mode raises the temperature by 4 degrees in winter when nobody is home."
    assert similarity.cosine(wrong, eco) >= SUPPORT.faithfulness_threshold
    share, refused = support(wrong, [eco], SUPPORT, similarity)
    assert share == 0.0 and refused[0]["rule"] == "contrast" and refused[0]["sentence"] == wrong
    assert ItemScoring(parts={}, faithfulness=share, contradictions=refused).contradictions[0].sentence == wrong
    storage = section("camera.md", "Video storage")
    assert faithfulness("With Nimbus Plus, cloud clips are kept for 3 days.", [storage], SUPPORT, similarity) == 0.0
    assert faithfulness("With Nimbus Plus, cloud clips are kept for 60 days.", [storage], SUPPORT, similarity) == 1.0
