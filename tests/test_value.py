"""The decision in money (advisor.value and its place in recommend.decide), on constructed rows with real numbers:
no model is needed, the rows carry per-item scores and costs as a run's analysis makes them."""
from __future__ import annotations

import numpy as np
import pytest

from advisor.economics import StrategyCosts
from advisor.recommend import NOT_ENOUGH, RECOMMENDED, Row, decide, describe_flip, recommend, value_flips
from advisor.stats import compare_all, mean_ci
from advisor.task import EconomicsSpec, OwnershipSpec
from advisor.value import (LOSS_TOLERANCE, posterior_accuracy, priced, sample_information, stake, units)

FAMILY = {"few-shot": ("prompting", 1), "lora": ("finetune", 5)}
TOKENS = {"few-shot": 155, "lora": 40}


def build(scores: dict[str, list[float]]):
    rows = []
    for name, s in scores.items():
        fam, cx = FAMILY[name]
        costs = StrategyCosts(name, TOKENS[name], 1, 0.0, 0.0, fam == "finetune", float(np.mean(s)), family=fam)
        e = mean_ci(s)
        rows.append(Row(name, fam, cx, e.mean, e.low, e.high, costs, scores=tuple(s)))
    return rows, {(c.a, c.b): c.as_dict() for c in compare_all(scores)}


def quiz(**kw) -> EconomicsSpec:
    """The capital-city quiz of issue 32: 50 requests/day over 90 days; lora carries $548 of set-up."""
    return EconomicsSpec(requests_per_day=50, horizon_days=90, input_price_per_mtok=0.5, output_price_per_mtok=1.5,
                         ownership={"finetune": OwnershipSpec(setup_usd=548)}, **kw)


def paired(n_both: int, only_a: int, only_b: int, neither: int) -> tuple[list[float], list[float]]:
    a = [1.0] * n_both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    b = [1.0] * n_both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    return a, b


# 34 items: few-shot 28 right (82%), lora 29 (85%), disagreeing on 7: a gap well inside the noise
NOISY = dict(zip(("few-shot", "lora"), paired(25, 3, 4, 2)))
# 300 items: few-shot 80%, lora 92%, lora right on every item few-shot gets: a gap the sample does show
CLEAR = dict(zip(("few-shot", "lora"), paired(240, 0, 36, 24)))


def test_a_dear_row_with_a_gap_inside_the_noise_flips_with_the_price_of_a_correct_answer():
    rows, comps = build(NOISY)
    cheap = decide(rows, comps, quiz(value_per_correct=0.01))
    assert cheap.economics["lora"].total_cost > 1500 * cheap.economics["few-shot"].total_cost
    assert (cheap.strategy, cheap.status) == ("few-shot", RECOMMENDED)
    assert cheap.value.of("few-shot")[1] == 1.0  # lora never pays at a cent a correct answer
    # worth $100 a correct answer, lora leads in expected value, but 34 items cannot show it is the better buy
    dear = decide(rows, comps, quiz(value_per_correct=100))
    assert (dear.strategy, dear.status) == ("lora", NOT_ENOUGH)
    assert "expected loss" in dear.evidence.why
    # with evidence that lora is more accurate, the high price recommends it, and the low one still does not
    rows, comps = build(CLEAR)
    assert decide(rows, comps, quiz(value_per_correct=100)).label == "lora"
    assert decide(rows, comps, quiz(value_per_correct=0.01)).label == "few-shot"


def test_the_report_states_the_value_of_a_correct_answer_at_which_the_verdict_flips():
    rows, comps = build(NOISY)
    spec = quiz(value_per_correct=0.01)
    rec = recommend(rows, comps, spec, n_train=100)
    flips = [f for f in rec["sensitivity"] if f["field"] == "value_per_correct"]
    assert flips and flips[0]["from"] == "few-shot"
    lo, hi = flips[0]["between"]
    assert hi - lo <= 0.01 * hi
    text = describe_flip(flips[0])
    assert text in rec["sensitivity_text"] and "value per correct answer of about $" in text
    # the flip is real: re-deciding on either side of it gives the two verdicts it names
    for value, label in ((lo, flips[0]["from"]), (hi, flips[0]["to"])):
        assert decide(rows, comps, spec.model_copy(update={"value_per_correct": value}), plan=False).label == label
    # a person's reading of the quiz: lora pays only when a correct answer is worth about $4 (548 / (4500 x 3%))
    assert 1 < hi < 4


def test_without_prices_the_margin_rule_decides_and_says_its_margin():
    rows, comps = build(NOISY)
    assert not priced(quiz())
    rec = recommend(rows, comps, quiz(), n_train=100, margin=0.2)
    assert rec["value"] is None and rec["evidence"]["margin"] == 0.2 and "20 points" in rec["rule"]
    assert not [f for f in rec["sensitivity"] if f["field"] == "value_per_correct"]
    # what a price would say: the quiz of issue 32, where a person picks few-shot at once
    rec = recommend(rows, comps, quiz(), n_train=100)  # the 10-point margin: lora may be up to 19 points ahead
    assert rec["status"] == NOT_ENOUGH and rec["sensitivity_text"][-1].startswith(
        "were a correct answer priced (economics.value_per_correct; the task sets no price, so the margin rule "
        "decides), the verdict would be few-shot, then not enough evidence from about $1.4")
    priced_rec = recommend(rows, comps, quiz(cost_per_error=0.01), n_train=100)
    assert priced_rec["value"]["cost_per_error"] == 0.01 and "expected net value" in priced_rec["rule"]


def test_p_best_sums_to_one_and_the_loss_is_that_of_the_draws():
    rows, comps = build(NOISY)
    vd = decide(rows, comps, quiz(value_per_correct=5)).value
    assert sum(vd.p_best) == pytest.approx(1.0)
    assert all(x >= 0 for x in vd.expected_loss)
    # the expected net values are economics.py's net values at the measured accuracies
    v = decide(rows, comps, quiz(value_per_correct=5))
    for name in vd.rows:
        assert vd.of(name)[0] == pytest.approx(v.economics[name].net_value)
    # with two rows, the loss gap is the expected value gap (E[max - V_a] - E[max - V_b] = E[V_b - V_a])
    (ea, _, la), (eb, _, lb) = vd.of("few-shot"), vd.of("lora")
    assert la - lb == pytest.approx(eb - ea, rel=0.05)
    assert vd.tolerance == pytest.approx(LOSS_TOLERANCE * stake(quiz(value_per_correct=5)))


def test_more_items_are_worth_something_only_while_the_decision_is_open():
    u = units([tuple(NOISY["few-shot"]), tuple(NOISY["lora"])])
    spec = quiz(value_per_correct=5)
    totals = np.array([0.35, 548.0])
    gains = [sample_information(u, totals, spec, [1, 5], 1, m) for m in (30, 120)]
    assert all(g > 0 for g in gains)
    # one row dominates (lora never pays at a cent a correct answer): more items are worth nothing
    cheap = quiz(value_per_correct=0.01)
    assert sample_information(u, totals, cheap, [1, 5], 0, 120) == 0.0
    rows, comps = build(NOISY)
    vd = decide(rows, comps, cheap).value
    assert vd.settled and all(g == 0 for _, g in vd.evsi)
    open_ = decide(rows, comps, spec).value
    assert not open_.settled and max(g for _, g in open_.evsi) > open_.tolerance


def test_the_task_states_the_loss_it_tolerates():
    """economics.loss_tolerance: at $1 a correct answer few-shot's expected loss ($20) is within one point's worth
    ($45) and it is recommended; a task that tolerates a tenth of a point ($4.50) gets "not enough evidence"."""
    rows, comps = build(NOISY)
    loose = decide(rows, comps, quiz(value_per_correct=1)).value
    assert loose.enough and 0 < loose.of("few-shot")[2] < loose.tolerance and loose.loss_tolerance == LOSS_TOLERANCE
    strict = quiz(value_per_correct=1, loss_tolerance=0.001)
    v = decide(rows, comps, strict)
    assert not v.value.enough and v.value.tolerance == pytest.approx(0.001 * stake(strict))
    said = recommend(rows, comps, strict, 20)
    assert said["status"] == NOT_ENOUGH and "(0.1 accuracy points' worth over the horizon)" in " ".join(said["reasons"])
    with pytest.raises(ValueError, match="loss_tolerance"):
        quiz(value_per_correct=1, loss_tolerance=0)


def test_the_same_seed_gives_the_same_decision_and_another_seed_other_draws():
    rows, comps = build(NOISY)
    spec = quiz(value_per_correct=5)
    a, b = decide(rows, comps, spec, seed=3).value, decide(rows, comps, spec, seed=3).value
    assert a == b
    c = decide(rows, comps, spec, seed=4).value
    assert c.p_best != a.p_best and c.expected_value == a.expected_value


def test_clusters_are_resampled_as_units():
    few, lora = NOISY["few-shot"], NOISY["lora"]
    # every item asked three times in its own cluster: the same information as the items once each
    tripled = [tuple(x for x in s for _ in range(3)) for s in (few, lora)]
    clusters = [f"c{i:03d}" for i in range(len(few)) for _ in range(3)]  # sorted as the items are
    u = units(tripled, clusters)
    assert u.sums.shape == (len(few), 2) and set(u.sizes) == {3.0}
    once = posterior_accuracy(units([tuple(few), tuple(lora)]), 500, seed=1)
    np.testing.assert_allclose(posterior_accuracy(u, 500, seed=1), once)
    # treated as independent items, the same answers would look three times as sure
    naive = posterior_accuracy(units(tripled), 500, seed=1)
    assert np.std(naive[:, 1] - naive[:, 0]) < 0.7 * np.std(once[:, 1] - once[:, 0])
    rows, comps = build({"few-shot": list(tripled[0]), "lora": list(tripled[1])})
    spec = quiz(value_per_correct=5)
    assert decide(rows, comps, spec, clusters=clusters).value.clusters == len(few)
    assert decide(rows, comps, spec).value.clusters is None


def test_too_few_items_stay_not_enough_evidence_whatever_the_prices():
    rows, comps = build(dict(zip(("few-shot", "lora"), paired(10, 0, 5, 5))))
    v = decide(rows, comps, quiz(value_per_correct=0.01))
    assert v.status == NOT_ENOUGH and "eval items" in v.evidence.why and v.value is not None


def test_the_flip_search_finds_nothing_when_no_price_changes_the_verdict():
    # lora cheaper and never less accurate: no value of a correct answer makes few-shot the better buy
    rows, comps = build(CLEAR)
    spec = EconomicsSpec(requests_per_day=50, horizon_days=90, value_per_correct=1.0)
    assert decide(rows, comps, spec).label == "lora"
    assert [f for f in value_flips(rows, comps, spec) if f["to"] == "few-shot"] == []
