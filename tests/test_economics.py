"""Cost model and break-even on hand-computed cases."""
from __future__ import annotations

import pytest

from advisor.economics import StrategyCosts, break_even_requests_per_day, economics, payback_days, volume_sweep
from advisor.task import EconomicsSpec

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
    assert payback_days(ft, base, 1000) == pytest.approx(1 / 0.9)
    dearer = economics(costs("x", 2000, 50, train=100), SPEC)
    assert break_even_requests_per_day(dearer, base, 100) is None and payback_days(dearer, base, 1000) is None


def test_maintenance_retrains_only_when_knowledge_in_weights():
    spec = SPEC.model_copy(update={"knowledge_changes_per_month": 3, "horizon_days": 365})
    ft = economics(costs("ft", 100, 50, train=100, in_weights=True), spec)
    rag = economics(costs("rag", 900, 50, index=10), spec)
    assert ft.changes_over_horizon == pytest.approx(36)
    assert ft.maintenance_cost == pytest.approx(36 * 1.0)
    assert rag.maintenance_cost == pytest.approx(36 * 0.1)


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
    # Payback now has to repay the people cost too: $301 at $0.0009 saved per request, 1000 requests/day.
    assert payback_days(ft, p, 1000) == pytest.approx(301 / 0.9)


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
