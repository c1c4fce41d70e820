"""Cost model and break-even on hand-computed cases."""
from __future__ import annotations

import pytest

from advisor.economics import StrategyCosts, break_even_requests_per_day, economics, payback_days, volume_sweep
from advisor.task import DEFAULT_RETRAIN_USD, EconomicsSpec, OwnershipSpec

SPEC = EconomicsSpec(requests_per_day=1000, horizon_days=100, input_price_per_mtok=1.0, output_price_per_mtok=2.0,
                     hardware_price_per_hour=36.0, knowledge_changes_per_month=0)


def costs(name, prompt, completion, train=0.0, index=0.0, in_weights=False, acc=0.5):
    return StrategyCosts(name, prompt, completion, train, index, in_weights, acc)


def test_per_request_and_total():
    e = economics(costs("p", 1000, 50), SPEC)
    assert e.cost_per_request == pytest.approx((1000 * 1 + 50 * 2) / 1e6)  # $0.0011
    assert e.total_cost == pytest.approx(0.0011 * 1000 * 100)
    ft = economics(costs("ft", 100, 50, train=100), SPEC)  # 100 s at $36/h = $1
    assert ft.setup_cost == pytest.approx(1.0)


def test_break_even_hand_computed():
    base = economics(costs("p", 1000, 50), SPEC)        # $0.0011 / request, no set-up
    ft = economics(costs("ft", 100, 50, train=100), SPEC)  # $0.0002 / request, $1 set-up
    # 1 = (0.0011 - 0.0002) * v * 100  ->  v = 11.11 requests/day
    assert break_even_requests_per_day(ft, base, 100) == pytest.approx(1 / (0.0009 * 100))
    # $1 of set-up at $0.0009 saved per request and 1000 requests/day -> 1.111 days
    assert payback_days(ft, base, 1000, 100) == pytest.approx(1 / 0.9)
    dearer = economics(costs("x", 2000, 50, train=100), SPEC)
    assert break_even_requests_per_day(dearer, base, 100) is None and payback_days(dearer, base, 1000, 100) is None


def test_maintenance_retrains_only_when_knowledge_in_weights():
    spec = SPEC.model_copy(update={"knowledge_changes_per_month": 3, "horizon_days": 365})
    ft = economics(costs("ft", 100, 50, train=100, in_weights=True), spec)
    rag = economics(StrategyCosts("rag", 900, 50, 0, 10, False, 0.5, family="rag"), spec)
    assert ft.changes_over_horizon == pytest.approx(36)
    # each retrain: 100 s at $36/h of compute, plus the documented default people cost
    assert ft.retrains and ft.cost_per_change == pytest.approx(1.0 + DEFAULT_RETRAIN_USD)
    assert ft.maintenance_cost == pytest.approx(36 * (1.0 + DEFAULT_RETRAIN_USD))
    assert not rag.retrains and rag.maintenance_cost == pytest.approx(36 * 0.1)


def test_weekly_knowledge_changes_make_the_fine_tune_pay_for_its_retrains():
    """Facts change weekly; each retrain costs 20 minutes of a $2/hour machine and $300 of people time."""
    weekly = 52 / 12
    spec = EconomicsSpec(requests_per_day=3000, horizon_days=365, hardware_price_per_hour=2.0,
                         knowledge_changes_per_month=weekly,
                         ownership={"finetune": OwnershipSpec(retrain_usd=300), "rag": OwnershipSpec(reindex_usd=5)})
    ft = economics(costs("ft", 100, 50, train=1200, in_weights=True), spec)
    rag = economics(StrategyCosts("rag", 900, 50, 0, 30, False, 0.5, family="rag"), spec)
    assert ft.changes_over_horizon == pytest.approx(52)
    assert ft.cost_per_change == pytest.approx(1200 / 3600 * 2 + 300)
    assert ft.maintenance_cost == pytest.approx(52 * (2 / 3 + 300))  # about $15,600 a year of retraining
    assert ft.ownership_cost == pytest.approx(52 * 300)
    assert rag.cost_per_change == pytest.approx(30 / 3600 * 2 + 5) and rag.maintenance_cost < ft.maintenance_cost / 50
    # Without changes nothing is retrained; the same row costs the retrains less.
    still = economics(costs("ft", 100, 50, train=1200, in_weights=True),
                      spec.model_copy(update={"knowledge_changes_per_month": 0}))
    assert ft.total_cost - still.total_cost == pytest.approx(52 * (2 / 3 + 300))


def test_a_row_that_fails_the_freshness_check_pays_retrains_although_its_knowledge_is_not_in_its_weights():
    spec = SPEC.model_copy(update={"knowledge_changes_per_month": 2, "horizon_days": 365})
    follows = StrategyCosts("lora+rag", 300, 50, 100, 10, False, 0.5, family="finetune+rag")
    stale = StrategyCosts("lora+rag", 300, 50, 100, 10, False, 0.5, family="finetune+rag", stale_after_update=True)
    assert economics(follows, spec).cost_per_change == pytest.approx(0.1)  # a re-index only
    assert economics(stale, spec).cost_per_change == pytest.approx(0.1 + 1.0 + DEFAULT_RETRAIN_USD)


def test_per_change_costs_are_checked_where_they_belong():
    with pytest.raises(ValueError, match=r"ownership\.rag\.retrain_usd: retrain_usd is a cost of `finetune` only"):
        EconomicsSpec(ownership={"rag": {"retrain_usd": 100}})
    with pytest.raises(ValueError, match=r"ownership\.finetune\.reindex_usd"):
        EconomicsSpec(ownership={"finetune": {"reindex_usd": 1}})
    assert EconomicsSpec().retrain_usd() == DEFAULT_RETRAIN_USD
    assert EconomicsSpec(ownership={"finetune": {"retrain_usd": 0}}).retrain_usd() == 0


def test_roi_with_value_per_correct():
    spec = SPEC.model_copy(update={"value_per_correct": 0.01, "cost_per_error": 0.02})
    e = economics(costs("p", 1000, 50, acc=0.8), spec)
    value = 1000 * 100 * (0.8 * 0.01 - 0.2 * 0.02)
    assert e.net_value == pytest.approx(value - e.total_cost)
    assert e.roi == pytest.approx(e.net_value / e.total_cost)


def test_sweep_is_monotone_in_volume():
    sweep = volume_sweep([costs("p", 1000, 50)], SPEC)
    totals = sweep["total_cost"]["p"]
    assert all(a < b for a, b in zip(totals, totals[1:]))
    assert sweep["requests_per_day"][0] < SPEC.requests_per_day < sweep["requests_per_day"][-1]


def test_ownership_costs_apply_per_family_and_combinations_pay_for_each_part():
    from advisor.task import OwnershipSpec

    spec = SPEC.model_copy(update={"horizon_days": 365, "ownership": {
        "finetune": OwnershipSpec(setup_usd=300, monthly_usd=20), "rag": OwnershipSpec(monthly_usd=5)}})
    p = economics(costs("p", 1000, 50), spec)
    ft = economics(StrategyCosts("ft", 100, 50, 100, 0, False, 0.5, family="finetune"), spec)
    both = economics(StrategyCosts("ft+rag", 300, 50, 100, 1, False, 0.5, family="finetune+rag"), spec)
    assert p.ownership_cost == 0 and p.fixed_cost == 0
    assert ft.setup_cost == pytest.approx(1.0 + 300)  # 100 s at $36/h + one-time ownership
    assert ft.maintenance_cost == pytest.approx(20 * 12)  # 12 months of $20
    assert ft.ownership_cost == pytest.approx(300 + 240)
    assert both.ownership_cost == pytest.approx(300 + 12 * (20 + 5))
    # Payback has to repay the set-up ($301) *and* the running costs: $0.90 saved a day at 1000 requests/day,
    # but $20 a month ($0.66 a day) of ownership leaves $0.24 a day, so $301 takes 1,250 days: never within a year.
    assert payback_days(ft, p, 1000, 365) is None
    # At 3,000 requests/day it saves $2.70 a day, $2.04 after the running costs: paid back on day 148.
    ft3 = economics(StrategyCosts("ft", 100, 50, 100, 0, False, 0.5, family="finetune"),
                    spec.model_copy(update={"requests_per_day": 3000}))
    p3 = economics(costs("p", 1000, 50), spec.model_copy(update={"requests_per_day": 3000}))
    running_per_day = 240 / 365
    assert payback_days(ft3, p3, 3000, 365) == pytest.approx(301 / (2.7 - running_per_day))


def test_running_costs_above_the_savings_never_pay_back():
    """The support case: lora+rag saves a little per request, but its monthly costs exceed the savings."""
    from advisor.task import OwnershipSpec

    spec = SPEC.model_copy(update={"requests_per_day": 3000, "horizon_days": 365, "ownership": {
        "finetune": OwnershipSpec(setup_usd=400, monthly_usd=50), "rag": OwnershipSpec(setup_usd=200, monthly_usd=25)}})
    base = economics(costs("few-shot", 1000, 50), spec)  # $0.0011 a request
    both = economics(StrategyCosts("lora+rag", 950, 50, 300, 5, False, 0.5, family="finetune+rag"), spec)
    # By hand: (950 + 50 x 2) tokens at $1/$2 per M is $0.00105 a request against $0.0011, $0.15 a day saved at
    # 3,000 requests/day ($4.56 a month) against $75 a month of ownership ($900 a year); set-up $603.05: $3 of
    # training and $0.05 of indexing at $36/hour, and $600 of ownership set-up.
    assert base.cost_per_request == pytest.approx(0.0011) and both.cost_per_request == pytest.approx(0.00105)
    assert both.setup_cost == pytest.approx(603.05) and both.maintenance_cost == pytest.approx(900)
    assert payback_days(both, base, 3000, 365) is None
    # It is the running costs, not the horizon: without them the set-up is repaid on day 4,020 (603.05 / 0.15), the
    # figure the old formula gave; with them it never is, even over 5,000 days.
    free_running = {"finetune": OwnershipSpec(setup_usd=400), "rag": OwnershipSpec(setup_usd=200)}
    for horizon, ownership, expected in ((5000, free_running, 603.05 / 0.15), (5000, spec.ownership, None)):
        long = spec.model_copy(update={"horizon_days": horizon, "ownership": ownership})
        b = economics(StrategyCosts("lora+rag", 950, 50, 300, 5, False, 0.5, family="finetune+rag"), long)
        days = payback_days(b, economics(costs("few-shot", 1000, 50), long), 3000, horizon)
        assert days == (None if expected is None else pytest.approx(expected))
    # Paid back later than the horizon is never, too; and a row cheaper to set up that costs more to run never is.
    cheap_setup = economics(StrategyCosts("x", 2000, 50, 0, 0, False, 0.5, family="rag"), spec.model_copy(
        update={"ownership": {"rag": OwnershipSpec(monthly_usd=25)}}))
    assert cheap_setup.setup_cost == base.setup_cost and payback_days(cheap_setup, base, 3000, 365) is None


def test_rows_priced_their_own_way():
    """Hosted rows pay their endpoint's token prices, self-hosted rows their machine's time; others the task's."""
    hosted = StrategyCosts("h", 1000, 50, 0, 0, False, 0.5,
                           pricing={"kind": "hosted", "input_price_per_mtok": 0.15, "output_price_per_mtok": 0.60})
    assert economics(hosted, SPEC).cost_per_request == pytest.approx((1000 * 0.15 + 50 * 0.60) / 1e6)
    own = StrategyCosts("s", 1000, 50, 0, 0, False, 0.5,
                        pricing={"kind": "self-hosted", "hardware_price_per_hour": 3.6, "seconds_per_request": 0.5})
    assert economics(own, SPEC).cost_per_request == pytest.approx(0.5 * 3.6 / 3600)  # tokens do not matter
    task = StrategyCosts("t", 1000, 50, 0, 0, False, 0.5, pricing={"kind": "task token prices"})
    assert economics(task, SPEC).cost_per_request == pytest.approx((1000 * 1 + 50 * 2) / 1e6)
