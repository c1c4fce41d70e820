"""How sure we are: intervals, paired comparisons, a multiple-comparison correction and power.

Small samples are the norm here (tens of eval items), so every method is chosen to stay
honest at that size:

- a pass/fail mean gets a Wilson score interval (never zero width, right at 0% and
  100%); other scores a percentile bootstrap;
- two rows on the same items: McNemar's exact test for pass/fail scores (interval of the
  difference: Bonett and Price's adjusted Wald interval for paired proportions), otherwise a
  sign-flip permutation test of the mean difference with a bootstrap interval; either way
  the direction of the result is the sign of the mean difference;
- the pairwise tests of one run are one family: Holm's step-down correction;
- power: exact power of McNemar's test, hence the eval items a comparison needs and the
  smallest difference a sample can detect.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8
N_RESAMPLES = 2000
MAX_ITEMS = 100_000  # a power calculation that needs more than this says "more than 100,000"


@dataclass
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def is_binary(*values) -> bool:
    """Pass/fail scores only (every value 0 or 1)."""
    x = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values]) if values else np.array([])
    return len(x) > 0 and bool(np.all((x == 0) | (x == 1)))


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy)."""
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mean_ci(values, seed: int = 0) -> Estimate:
    """Mean with a 95% interval: Wilson for pass/fail scores, percentile bootstrap otherwise.

    Identical scores in [0, 1] that are not pass/fail (every item 0.5, say) leave the bootstrap
    nothing to resample; a score in [0, 1] varies at most as much as pass/fail with the same mean,
    so the Wilson bounds of the nearest whole counts stand in.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if is_binary(x):
        return Estimate(mean, *wilson(int(x.sum()), n), n)
    if np.all(x == x[0]):
        if 0 <= mean <= 1:
            return Estimate(mean, wilson(math.floor(mean * n), n)[0], wilson(math.ceil(mean * n), n)[1], n)
        return Estimate(mean, mean, mean, n)
    res = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


@dataclass
class Comparison:
    a: str
    b: str
    diff: float  # mean(a) - mean(b)
    low: float
    high: float
    p_value: float  # the test's own p-value
    test: str
    significant: bool  # p_adjusted < alpha and diff != 0
    p_adjusted: float  # Holm-corrected over the run's pairwise family (= p_value for a lone pair)
    better: str | None  # a or b by the sign of diff; None when the means are equal
    n: int = 0  # items compared

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def paired_difference_ci(x, y, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of mean(x) - mean(y) for paired pass/fail scores: Bonett and Price's (2012) adjusted Wald
    interval, which adds one to each discordant count. It rests on the discordant pairs, as McNemar's test
    does, and unlike a bootstrap it is not zero-width when the two rows agree on every item."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    only_x = (float(((x == 1) & (y == 0)).sum()) + 1) / (n + 2)
    only_y = (float(((x == 0) & (y == 1)).sum()) + 1) / (n + 2)
    d = only_x - only_y
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(max(0.0, only_x + only_y - d * d) / (n + 2))
    return max(-1.0, d - half), min(1.0, d + half)


def paired_compare(name_a: str, a, name_b: str, b, seed: int = 0, alpha: float = ALPHA) -> Comparison:
    """Is a better or worse than b on the same items? Never 'yes' on a tie.

    The direction is the sign of the mean difference, and both tests test exactly that mean
    (McNemar's discordant pairs for pass/fail; a sign-flip permutation test of the mean
    difference otherwise), so a significant result always points the way the means differ.
    `significant` here is uncorrected; `compare_all` corrects it over the family.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    n = len(d)
    diff = float(d.mean()) if n else 0.0
    better = None if diff == 0 else (name_a if diff > 0 else name_b)
    if n == 0:
        return Comparison(name_a, name_b, 0.0, float("nan"), float("nan"), 1.0, "no items", False, 1.0, None, 0)
    if is_binary(x, y):
        low, high = paired_difference_ci(x, y, 1 - alpha)
        only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        test = f"McNemar exact ({only_a} vs {only_b} discordant)"
    else:
        if np.all(d == d[0]):
            low = high = diff
        else:
            res = stats.bootstrap((d,), np.mean, confidence_level=1 - alpha, n_resamples=N_RESAMPLES,
                                  method="percentile", rng=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.any(d != 0):
            p = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=N_RESAMPLES,
                                       rng=np.random.default_rng(seed)).pvalue
        else:
            p = 1.0
        test = "paired permutation test of the mean"
    p = float(p)
    return Comparison(name_a, name_b, diff, float(low), float(high), p, test, bool(p < alpha and diff != 0), p,
                      better, n)


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values: the family-wise error rate stays at alpha over all the tests."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def compare_all(scores: dict[str, list[float]], seed: int = 0, alpha: float = ALPHA) -> list[Comparison]:
    """Every pair of rows on the same items, as one family: significance after Holm's correction."""
    names = list(scores)
    pairs = [paired_compare(a, scores[a], b, scores[b], seed, alpha) for i, a in enumerate(names) for b in names[i + 1:]]
    for c, adjusted in zip(pairs, holm([c.p_value for c in pairs])):
        c.p_adjusted = adjusted
        c.significant = bool(adjusted < alpha and c.diff != 0)
    return pairs


# ---------------------------------------------------------------- power


def _min_discordant(alpha: float) -> int:
    """The fewest discordant pairs, all one way, that McNemar's exact test can call significant."""
    return math.ceil(math.log2(2 / alpha) + 1e-12)


def mcnemar_power(n: int, delta: float, psi: float, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided McNemar test (p < alpha) on n paired pass/fail items.

    delta: the true difference of the two accuracies; psi: the share of items on which the two
    rows disagree (psi >= |delta|). The discordant count is Binomial(n, psi); of those, the better
    row's share is (psi + delta) / (2 psi); the test rejects when the split is lopsided enough.
    """
    if n <= 0 or psi <= 0 or delta <= 0:
        return 0.0
    psi = min(1.0, max(psi, delta))
    m = np.arange(n + 1)
    q = (psi + delta) / (2 * psi)
    # largest c with 2 * P(Bin(m, 1/2) <= c) < alpha: the test rejects when min(k, m - k) <= c
    c = stats.binom.ppf(alpha / 2, m, 0.5) - 1
    reject = np.where(c >= 0, stats.binom.cdf(c, m, q) + stats.binom.sf(m - c - 1, m, q), 0.0)
    return float(np.sum(stats.binom.pmf(m, n, psi) * reject))


@lru_cache(maxsize=4096)  # the verdict's sensitivity sweep asks the same questions many times
def items_needed(delta: float, psi: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Eval items for McNemar's test to detect `delta` with `power`; None if more than MAX_ITEMS."""
    if delta <= 0:
        return None
    lo, hi = 1, max(_min_discordant(alpha), 2)
    while mcnemar_power(hi, delta, psi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > MAX_ITEMS:
            return None if mcnemar_power(MAX_ITEMS, delta, psi, alpha) < power else MAX_ITEMS
    while hi - lo > 1:  # power rises with n (up to the small saw-teeth of an exact test)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mcnemar_power(mid, delta, psi, alpha) >= power else (mid, hi)
    return hi


@lru_cache(maxsize=4096)
def detectable_difference(n: int, psi: float = 0.0, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest accuracy difference McNemar's test on n items detects with `power`.

    psi: the share of items two rows disagree on (at least the difference itself: the best case,
    where the better row is right wherever the other is). None when no difference up to 100
    points is detectable (too few items for the test ever to be significant)."""
    if n <= 0 or mcnemar_power(n, 1.0, 1.0, alpha) < power:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(20):  # to a millionth
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mcnemar_power(n, mid, max(psi, mid), alpha) >= power else (mid, hi)
    return hi


def discordance(a, b) -> float:
    """Share of items on which two rows' scores differ."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.mean(x != y)) if len(x) else 0.0
