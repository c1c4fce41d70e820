"""Statistics that fit small samples: intervals, paired direction, Holm's correction, power (advisor.stats)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from advisor.stats import (compare_all, detectable_difference, holm, items_needed, mcnemar_power, mean_ci,
                           paired_compare, paired_difference_ci)

binary = st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=60)
graded = st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=2, max_size=40)


def test_a_perfect_row_on_40_items_gets_a_real_interval():
    e = mean_ci([1.0] * 40)
    assert e.mean == 1 and e.high == 1 and 0.85 < e.low < 0.95  # Wilson: 91.2%
    assert mean_ci([0.0] * 40).high > 0.05
    assert mean_ci([0.5] * 10).low < 0.5 < mean_ci([0.5] * 10).high  # identical non-binary scores too


@settings(deadline=None)  # the machine is shared: timing is not what these test
@given(binary)
def test_pass_fail_intervals_are_wilson_and_never_zero_width(x):
    e = mean_ci(x)
    ci = stats.binomtest(int(sum(x)), len(x)).proportion_ci(method="wilson")
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high))
    assert e.low <= e.mean <= e.high and e.high - e.low > 0


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.tuples(binary, binary), st.tuples(graded, graded)), st.integers(0, 3))
def test_the_direction_always_agrees_with_the_mean_difference(pair, seed):
    a, b = pair
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    c = paired_compare("a", a, "b", b, seed)
    diff = float(np.mean(a) - np.mean(b))
    assert c.diff == pytest.approx(diff)
    assert c.better == ("a" if diff > 0 else "b" if diff < 0 else None)
    if c.significant:
        assert c.better is not None
    assert c.low <= c.diff + 1e-9 and c.diff <= c.high + 1e-9


@settings(deadline=None)
@given(st.lists(st.floats(0, 1), min_size=0, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_the_order(p):
    adjusted = holm(p)
    assert len(adjusted) == len(p)
    assert all(q >= raw - 1e-15 and q <= 1 for q, raw in zip(adjusted, p))
    for (p1, q1), (p2, q2) in itertools.combinations(zip(p, adjusted), 2):
        if p1 < p2:
            assert q1 <= q2 + 1e-15


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.lists(
    st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n), min_size=2, max_size=5)))  # rows on the same items
def test_the_family_is_corrected_and_never_less_strict(rows):
    scores = {f"r{i}": r for i, r in enumerate(rows)}
    for c in compare_all(scores):
        assert c.p_adjusted >= c.p_value
        assert c.significant == (c.p_adjusted < 0.05 and c.diff != 0)


def test_the_interval_of_a_difference_between_identical_rows_is_not_degenerate():
    for x in ([1.0] * 40, [1.0] * 20 + [0.0] * 20):
        low, high = paired_difference_ci(x, x)
        assert low < -0.05 and high > 0.05  # 40 items agreeing: either row could still be ~6 points better
    # Bonett and Price (2012): one added to each discordant count, n + 2 items
    x, y = [1, 1, 1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 1, 1, 0]  # 2 only-x, 1 only-y of 8
    low, high = paired_difference_ci(x, y)
    p12, p21 = 3 / 10, 2 / 10
    half = 1.959964 * ((p12 + p21 - (p12 - p21) ** 2) / 10) ** 0.5
    assert (low, high) == pytest.approx((p12 - p21 - half, p12 - p21 + half), abs=1e-6)


def _power_by_enumeration(n, delta, psi, alpha):
    """Sum over every (a-only, b-only, same) split of n items: the chance McNemar's exact test rejects."""
    pa, pb = (psi + delta) / 2, (psi - delta) / 2
    total = 0.0
    for a in range(n + 1):
        for b in range(n + 1 - a):
            if a + b and stats.binomtest(a, a + b, 0.5).pvalue < alpha:
                total += stats.multinomial.pmf([a, b, n - a - b], n, [pa, pb, 1 - psi])
    return total


@pytest.mark.parametrize("n, delta, psi, alpha", [(10, 0.3, 0.5, 0.05), (20, 0.2, 0.4, 0.05 / 3), (15, 0.5, 0.5, 0.05),
                                                  (7, 1.0, 1.0, 0.05 / 3), (25, 0.1, 0.3, 0.05)])
def test_exact_mcnemar_power_matches_enumeration(n, delta, psi, alpha):
    assert mcnemar_power(n, delta, psi, alpha) == pytest.approx(_power_by_enumeration(n, delta, psi, alpha))


def test_items_needed_and_detectable_difference_agree():
    n = items_needed(0.2, 0.4, 0.05)
    assert mcnemar_power(n, 0.2, 0.4, 0.05) >= 0.8 > mcnemar_power(n - 1, 0.2, 0.4, 0.05)
    assert items_needed(0.1, 0.3, 0.05) > items_needed(0.2, 0.3, 0.05) > items_needed(0.4, 0.4, 0.05)
    # 4 items: even 100 points cannot be shown (McNemar needs 6 discordant items at alpha 0.05)
    assert detectable_difference(4) is None and detectable_difference(6) is not None
    d = detectable_difference(40, 0.3, 0.05 / 6)
    assert 0.1 < d < 0.5 and mcnemar_power(40, d, max(0.3, d), 0.05 / 6) >= 0.8


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 40).flatmap(lambda n: st.lists(
    st.one_of(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
              st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n)), min_size=2, max_size=4)))
def test_a_simultaneous_interval_excludes_zero_only_with_a_corrected_significant_test(rows):
    """The intervals shown beside Holm-corrected tests never claim a gap the corrected test does not."""
    from advisor.stats import compare_all

    for c in compare_all({f"r{i}": r for i, r in enumerate(rows)}):
        if not c.significant:
            assert c.low <= 0 <= c.high, c
        assert c.confidence == pytest.approx(1 - 0.05 / (len(rows) * (len(rows) - 1) // 2))


def test_the_exact_interval_inverts_mcnemars_test():
    from advisor.stats import mcnemar_exact_interval

    for only_a, only_b in ((6, 0), (5, 0), (9, 2), (11, 2), (3, 3)):
        x = [1.0] * only_a + [0.0] * only_b + [1.0] * 10
        y = [0.0] * only_a + [1.0] * only_b + [1.0] * 10
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        low, high = mcnemar_exact_interval(x, y, 0.95)
        assert (low > 0 or high < 0) == (p < 0.05), (only_a, only_b, p, low, high)


def _clustered(k: int, size: int, seed: int) -> tuple[list[float], list[int]]:
    """k clusters of `size` items; every item of a cluster gets its cluster's pass/fail draw (fully correlated)."""
    r = np.random.default_rng(seed)
    draws = r.random(k) < 0.5
    return [float(d) for d in draws for _ in range(size)], [c for c in range(k) for _ in range(size)]


def test_clustered_intervals_are_wider_when_clusters_are_correlated_and_alike_when_singletons():
    x, clusters = _clustered(10, 4, 0)  # 40 items from 10 documents
    naive, clustered = mean_ci(x), mean_ci(x, clusters=clusters)
    assert clustered.high - clustered.low > 1.5 * (naive.high - naive.low)
    singletons = mean_ci(x, clusters=list(range(40)))
    assert singletons.high - singletons.low == pytest.approx(naive.high - naive.low, rel=0.05)
    graded = [v * 0.8 + 0.1 * (i % 3) for i, v in enumerate(x)]
    assert (mean_ci(graded, clusters=clusters).high - mean_ci(graded, clusters=clusters).low
            > 1.3 * (mean_ci(graded).high - mean_ci(graded).low))
    # paired: two rows that differ on whole clusters; the cluster test sees 10 units, not 40
    y, _ = _clustered(10, 4, 1)
    naive_c, clustered_c = paired_compare("x", x, "y", y), paired_compare("x", x, "y", y, clusters=clusters)
    assert clustered_c.test.startswith("cluster sign-flip") and clustered_c.p_value > naive_c.p_value
    assert clustered_c.high - clustered_c.low > naive_c.high - naive_c.low
    alone = paired_compare("x", x, "y", y, clusters=list(range(40)))
    assert alone.test == naive_c.test and alone.p_value == naive_c.p_value
