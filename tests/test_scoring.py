"""Scorers and statistics: planted differences are found, ties are not called."""
from __future__ import annotations

import numpy as np
import pytest

from advisor.scoring import Tools, agree, normalize, passes_format, score, score_item, token_f1
from advisor.stats import mean_ci, paired_compare
from advisor.task import AllOf, Example, ScoringSpec, load_task


def ex(**kw):
    base = dict(id="x", input="q", output=None)
    base.update(kw)
    return Example(**base)


def test_normalize_keeps_numbers_with_their_currency_and_percent():
    assert normalize("The price is $12.99!") == "price is $12.99"
    assert normalize("Call 1-800-555-0147.") == "call 1-800-555-0147"
    assert normalize("Students get 15% off.") == "students get 15% off"


def test_a_percentage_is_not_found_in_days_nor_dollars_in_a_bare_number():
    """The counter-examples of issue 17: normalisation used to drop `%` and `$`."""
    spec = ScoringSpec(method="contains")
    assert score("You have 15 days to decide.", ex(answers=("15%",)), spec) == 0.0
    assert score("Students get 15% off.", ex(answers=("15%",)), spec) == 1.0
    assert score("It costs 149 euros.", ex(answers=("$149",)), spec) == 0.0


def test_a_one_line_format_is_not_passed_by_a_multi_line_answer():
    spec = ScoringSpec(method="format", format=r"^Hi! .+ Bye\.$")
    two_lines = "Hi! First line.\nSecond line. Bye."
    assert passes_format("Hi! One line. Bye.", spec)
    assert not passes_format(two_lines, spec)
    assert score(two_lines, ex(output="Hi! x Bye."), spec) == 0.0
    assert passes_format(two_lines, ScoringSpec(method="format", format=spec.format, multiline=True))


@pytest.mark.parametrize("method, answer, refs, expected", [
    ("exact", "The Answer.", ("answer",), 1.0),
    ("exact", "the answer is here", ("answer",), 0.0),
    ("contains", "It costs $149 before tax.", ("$149",), 1.0),
    ("contains", "It costs $1149.", ("$149",), 0.0),  # word boundaries: not a substring match
    ("contains", "Returns within 30 days", ("30 days", "thirty days"), 1.0),
])
def test_scorers(method, answer, refs, expected):
    assert score(answer, ex(answers=refs), ScoringSpec(method=method)) == expected


def test_f1_choice_regex_format():
    assert token_f1("red big apple", "big red apple") == 1.0
    assert 0 < score("a red apple pie", ex(answers=("red apple",)), ScoringSpec(method="f1")) < 1
    mc = ex(choices=("Paris", "Rome", "Oslo"), answers=("B",))
    assert score("B) Rome", mc, ScoringSpec(method="choice")) == 1.0
    assert score("It is Rome.", mc, ScoringSpec(method="choice")) == 1.0
    assert score("A", mc, ScoringSpec(method="choice")) == 0.0
    spec = ScoringSpec(method="regex", regex=r"^\{.*\}$", format=r"^Hi! .+ Bye\.$")
    assert score('{"a": 1}', ex(answers=("x",)), spec) == 1.0
    assert passes_format("Hi! Sure. Bye.", spec) and not passes_format("Sure. Bye.", spec)
    tagged = ex(output="Hi! ok Bye.", tags=("style",))
    assert score("Hi! whatever Bye.", tagged, ScoringSpec(method="exact", by_tag={"style": "format"}, format=spec.format)) == 1.0


def test_agreement_is_not_shared_wrongness(embedder):
    e = ex(answers=("$149",))
    spec = ScoringSpec(method="contains")
    tools = Tools(lambda: embedder)
    assert agree("It is $149.", "The price is $149.", e, spec, tools)  # same fact, other words
    assert not agree("It is $99.", "It is $12.", e, spec, tools)       # both wrong, differently
    assert agree("It is $99.", "it is $99", e, spec, tools)            # same text
    assert not agree("It is $149.", "The price is $149.", e, spec)     # no embedder: words only


def test_agreement_is_on_content_not_on_scores(embedder):
    """Two answers with the same score and format verdict used to 'agree' whatever they said."""
    tools = Tools(lambda: embedder)
    spec = ScoringSpec(method="format", format=r"^Hi! (?P<content>.+) Bye\.$")
    e = ex(output="Hi! Use the reset link on the sign-in page. Bye.")
    a, b = "Hi! Please send us your order number. Bye.", "Hi! Sorry, the shop is closed today. Bye."
    assert score(a, e, spec) == score(b, e, spec) == 1 and passes_format(a, spec) == passes_format(b, spec)
    assert not agree(a, b, e, spec, tools)
    assert agree("Hi! I am so glad it is working now, and thank you for letting us know. Bye.",
                 "Hi! Great to hear it works now, thanks for telling us. Bye.", e, spec, tools)
    # Embeddings barely tell these apart (cosine 0.95): the quantities must match too.
    assert not agree("Hi! The plug is covered for 18 months. Bye.", "Hi! The plug is covered for 18 days. Bye.",
                     e, spec, tools)


def test_contradicting_json_replies_do_not_agree(embedder):
    tools = Tools(lambda: embedder)
    spec = ScoringSpec(method=AllOf(all_of=["format", "json_fields"]), format=ORDERS_FORMAT, free_text_fields=["reply"])
    e = ex(output=ORDER)
    other = ORDER.replace('"quantity": 2', '"quantity": 5').replace('"intent": "order"', '"intent": "cancel"')
    assert passes_format(ORDER, spec) and passes_format(other, spec)
    assert not agree(ORDER, other, e, spec, tools)
    assert agree(ORDER, ORDER.replace(", ", ","), e, spec, tools)  # the same fields, other spacing
    reworded = ORDER.replace("Thank you, we'll get 2 mugs ready for Leeds and flag them as urgent.",
                             "Thanks, 2 mugs for Leeds are on their way by express dispatch.")
    assert agree(ORDER, reworded, e, spec, tools)  # free text by meaning


ORDERS_FORMAT = load_task("data/json_orders").spec.scoring.format
ORDER = ('{"intent": "order", "item": "mug", "quantity": 2, "size": "large", "colour": "blue", "city": "Leeds", '
         '"urgent": true, "reply": "Thank you, we\'ll get 2 mugs ready for Leeds and flag them as urgent."}')


def test_json_fields_scores_what_the_reply_says_not_its_shape(embedder):
    """A reply with the wrong intent, item and quantity passes the format regex; json_fields shows what is wrong."""
    tools = Tools(lambda: embedder)
    spec = ScoringSpec(method=AllOf(all_of=["format", "json_fields"]), format=ORDERS_FORMAT, free_text_fields=["reply"])
    e = ex(output=ORDER)
    wrong = ('{"intent": "question", "item": "teapot", "quantity": 7, "size": "large", "colour": "blue", '
             '"city": "Leeds", "urgent": true, "reply": "Thank you, we will get 2 mugs ready for Leeds."}')
    assert score(wrong, e, ScoringSpec(method="format", format=ORDERS_FORMAT)) == 1.0
    s = score_item(wrong, e, spec, tools)
    assert s.parts == {"format": 1.0, "json_fields": 5 / 8} and s.value == 5 / 8
    assert {k for k, ok in s.details["fields"].items() if not ok} == {"intent", "item", "quantity"}
    assert score_item(ORDER, e, spec, tools).value == 1.0
    # Perfect structure, invented enum values: exactly that shows.
    invented = ORDER.replace('"size": "large"', '"size": "big"').replace('"intent": "order"', '"intent": "purchase"')
    s = score_item(invented, e, spec, tools)
    assert s.parts["format"] == 0.0 and s.value == 0.0
    assert score_item(invented, e, ScoringSpec(method="json_fields", free_text_fields=["reply"]), tools).value == 6 / 8
    # JSON inside prose is still read (format is the other metric); no JSON at all gets nothing right.
    assert score_item(f"Sure! {ORDER} Bye", e, ScoringSpec(method="json_fields", free_text_fields=["reply"]),
                      tools).value == 1.0
    none = score_item("I would like to help.", e, ScoringSpec(method="json_fields"), tools)
    assert none.value == 0.0 and not any(none.details["fields"].values())
    # Exact types: "2" is not 2, 1 is not true.
    typed = ORDER.replace('"quantity": 2', '"quantity": "2"').replace('"urgent": true', '"urgent": 1')
    assert score_item(typed, e, ScoringSpec(method="json_fields", free_text_fields=["reply"]), tools).value == 6 / 8


SUPPORT_FORMAT = r"^Hello from Nimbus! (?P<content>.+) Anything else I can help with\?$"


def test_semantic_fails_a_reply_that_says_nothing(embedder):
    """The issue's counter-example: a well-formed reply that does not answer the customer."""
    tools = Tools(lambda: embedder)
    spec = ScoringSpec(method=AllOf(all_of=["format", "semantic"]), format=SUPPORT_FORMAT)
    e = ex(input="I forgot my password and can't log in.",
           output="Hello from Nimbus! Tap Forgot Password on the sign-in screen, then follow the link we email you. "
                  "Anything else I can help with?")
    empty = "Hello from Nimbus! Yes, I can help with that. Anything else I can help with?"
    s = score_item(empty, e, spec, tools)
    assert s.parts["format"] == 1.0 and s.value == 0.0 and s.details["similarity"] < spec.semantic_threshold
    good = ("Hello from Nimbus! Use the Forgot Password link on the login page and check your email. "
            "Anything else I can help with?")
    s = score_item(good, e, spec, tools)
    assert s.value == 1.0 and s.details["similarity"] >= spec.semantic_threshold
    # The raw similarity is kept whatever the verdict; a missing quantity fails however close the words.
    fact = ex(output="The Nimbus Plug is covered for 18 months against defects.")
    s = score_item("The Nimbus Plug is covered for 18 days against defects.", fact, ScoringSpec(method="semantic"), tools)
    assert s.value == 0.0 and s.details["similarity"] > 0.9 and s.details["missing_quantities"] == ["18 month"]
    with pytest.raises(ValueError, match="embedder"):
        score(good, e, spec)


def test_ci_covers_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.random(20) < 0.6, rng.random(400) < 0.6
    a, b = mean_ci(small), mean_ci(big)
    assert a.low <= a.mean <= a.high and b.low <= b.mean <= b.high
    assert (b.high - b.low) < (a.high - a.low)
    assert 0.3 < mean_ci([1, 1, 1]).low < 1.0  # Wilson: three of three right is not certainty (issue 18)


def test_planted_difference_is_significant():
    rng = np.random.default_rng(1)
    a = (rng.random(80) < 0.85).astype(float)
    b = (rng.random(80) < 0.35).astype(float)
    c = paired_compare("a", a, "b", b)
    assert c.significant and c.diff > 0 and c.low > 0 and "McNemar" in c.test


def test_tie_is_not_called():
    a = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0] * 3, dtype=float)
    b = a.copy()
    b[:3] = 1 - b[:3]  # three discordant items out of 30
    c = paired_compare("a", a, "b", b)
    assert not c.significant and c.p_value > 0.05
    assert not paired_compare("a", a, "a2", a.copy()).significant


def test_continuous_scores_use_a_paired_test_of_the_mean():
    rng = np.random.default_rng(2)
    a = rng.random(50)
    c = paired_compare("a", a + 0.3, "b", a)
    assert c.significant and "permutation" in c.test and c.better == "a"


def test_judge_verdicts_are_parsed_and_kappa_has_an_interval():
    from advisor.scoring.judge import kappa_interval, parse_verdict

    assert parse_verdict("VERDICT: wrong\nREASON: it says 15 days, not 15%.") == (False, "it says 15 days, not 15%.")
    assert parse_verdict("verdict: **Correct**\nreason: same price") == (True, "same price")
    assert parse_verdict("Yes, the reply is correct.")[0] is None  # no verdict line: kept, scored as wrong
    kappa, low, high = kappa_interval([1, 0, 1, 0, 1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 1, 0, 0, 1, 1], seed=0)
    assert kappa == pytest.approx(0.8) and low < kappa <= high <= 1
    assert kappa_interval([1, 0, 1, 0], [0, 0, 0, 0], seed=0)[0] == 0.0  # a judge that says "wrong" to everything
    assert np.isnan(kappa_interval([1, 1, 1], [1, 1, 1], seed=0)[0])  # no disagreement possible: undefined


@pytest.mark.parametrize("name", ["support", "json_orders", "quick_facts"])
def test_each_sample_reference_scores_full_marks_and_another_items_does_not(name, embedder):
    """The samples' references are what their scoring expects: each item's own reference reply scores 1, and the
    style / JSON items (scored on content) do not give full marks to the next item's reference reply."""
    task = load_task(f"data/{name}")
    tools = Tools(lambda: embedder)
    sc = task.spec.scoring
    for ex in task.eval:
        if ex.output:
            assert score(ex.output, ex, sc, tools) == 1.0, ex.id
    content_scored = [ex for ex in task.eval if {"semantic", "json_fields"} & set(sc.method_for(ex.tags).all_of
                                                                                  if isinstance(sc.method_for(ex.tags), AllOf) else [])]
    assert bool(content_scored) == (name != "quick_facts")
    for ex, other in zip(content_scored, content_scored[1:] + content_scored[:1]):
        assert score(other.output, ex, sc, tools) < 1.0, (ex.id, other.id)
