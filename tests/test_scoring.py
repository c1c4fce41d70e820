"""Scorers and statistics: planted differences are found, ties are not called."""
from __future__ import annotations

import numpy as np
import pytest

from advisor.scoring import agree, normalize, passes_format, score, token_f1
from advisor.stats import mean_ci, paired_compare
from advisor.task import Example, ScoringSpec


def ex(**kw):
    base = dict(id="x", input="q", output=None)
    base.update(kw)
    return Example(**base)


def test_normalize_keeps_numbers():
    assert normalize("The price is $12.99!") == "price is 12.99"
    assert normalize("Call 1-800-555-0147.") == "call 1-800-555-0147"


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


def test_agreement_is_not_shared_wrongness():
    e = ex(answers=("$149",))
    spec = ScoringSpec(method="contains")
    assert agree("It is $149.", "The price: $149", e, spec)      # same fact, other words
    assert not agree("It is $99.", "It is $12.", e, spec)       # both wrong, differently
    assert agree("It is $99.", "it is $99", e, spec)            # same text


def test_ci_covers_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.random(20) < 0.6, rng.random(400) < 0.6
    a, b = mean_ci(small), mean_ci(big)
    assert a.low <= a.mean <= a.high and b.low <= b.mean <= b.high
    assert (b.high - b.low) < (a.high - a.low)
    assert mean_ci([1, 1, 1]).low == 1.0


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


def test_continuous_scores_use_wilcoxon():
    rng = np.random.default_rng(2)
    a = rng.random(50)
    c = paired_compare("a", a + 0.3, "b", a)
    assert c.significant and c.test.startswith("Wilcoxon")
