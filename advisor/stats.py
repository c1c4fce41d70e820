"""How sure we are: intervals, paired comparisons, a multiple-comparison correction and power.

Small samples are the norm here (tens of eval items), so every method is chosen to stay
honest at that size:

- a pass/fail mean gets a Wilson score interval (never zero width, right at 0% and
  100%); other scores a percentile bootstrap;
- two rows on the same items: McNemar's exact test for pass/fail scores (interval of the
  difference: Bonett and Price's adjusted Wald interval for paired proportions), otherwise a
  sign-flip permutation test of the mean difference with a bootstrap interval; either way
  the direction of the result is the sign of the mean difference;
- the pairwise tests of one run are one family: Holm's step-down correction, and the
  intervals shown beside them are simultaneous (Bonferroni level 1 - alpha/m), built so that
  an interval excludes zero only where the corrected test also finds a gap;
- items that share a cluster (a source document, a paraphrase group) are not independent:
  accuracy gets a Wilson interval on the effective sample size (n over the design effect)
  or a cluster bootstrap, and paired tests flip the signs of whole clusters;
- power: exact power of McNemar's test (a normal approximation for the sign-flip test),
  hence the eval items a comparison needs and the smallest difference a sample can detect;
  and the eval items at which a non-inferiority check within a margin passes.
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


def wilson_n(p: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion p on a (possibly fractional, effective) sample size n."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n)))
    return float(max(0.0, center - half)), float(min(1.0, center + half))


def cluster_codes(clusters, n: int) -> np.ndarray | None:
    """Integer cluster codes for n items, or None when no two items share a cluster (the naive methods apply)."""
    if clusters is None:
        return None
    labels = list(clusters)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} items")
    _, codes = np.unique(np.asarray([str(c) for c in labels]), return_inverse=True)
    return codes if codes.max(initial=-1) + 1 < n else None


def design_effect(values, codes: np.ndarray | None) -> float:
    """Cluster-robust variance of the mean over the independent-items variance (at least 1).

    The robust (sandwich) variance sums each cluster's deviations before squaring, with the
    usual k/(k-1) small-sample factor; singletons give about 1, correlated clusters more."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if codes is None or n < 2:
        return 1.0
    dev = x - x.mean()
    naive = float(np.sum(dev * dev))
    if naive == 0:
        return 1.0
    sums = np.bincount(codes, weights=dev)
    k = len(sums)
    robust = float(np.sum(sums * sums)) * (k / (k - 1) if k > 1 else 1.0)
    return max(1.0, robust / naive)


def mean_ci(values, seed: int = 0, clusters=None) -> Estimate:
    """Mean with a 95% interval: Wilson for pass/fail scores, percentile bootstrap otherwise.

    With clusters (items sharing a source document or paraphrase group): pass/fail scores get
    Wilson's interval on the effective sample size n / design effect (Korn and Graubard 1998),
    other scores a cluster bootstrap (whole clusters resampled).

    Identical scores in [0, 1] that are not pass/fail (every item 0.5, say) leave the bootstrap
    nothing to resample; a score in [0, 1] varies at most as much as pass/fail with the same mean,
    so the Wilson bounds of the nearest whole counts stand in.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    codes = cluster_codes(clusters, n)
    if codes is not None and not np.all(x == x[0]):
        if is_binary(x):
            return Estimate(mean, *wilson_n(mean, n / design_effect(x, codes)), n)
        naive, (lo, hi) = mean_ci(x, seed), _cluster_bootstrap(x, codes, seed)
        return Estimate(mean, min(lo, naive.low), max(hi, naive.high), n)  # never narrower than independent items
    if is_binary(x):
        return Estimate(mean, *wilson(int(x.sum()), n), n)
    if np.all(x == x[0]):
        if 0 <= mean <= 1:
            return Estimate(mean, wilson(math.floor(mean * n), n)[0], wilson(math.ceil(mean * n), n)[1], n)
        return Estimate(mean, mean, mean, n)
    res = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


def _cluster_bootstrap(x: np.ndarray, codes: np.ndarray, seed: int,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean when whole clusters are resampled (the ratio of sums)."""
    sums, sizes = np.bincount(codes, weights=x), np.bincount(codes).astype(float)
    k = len(sums)
    draw = np.random.default_rng(seed).integers(0, k, size=(N_RESAMPLES, k))
    means = sums[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(lo), float(hi)


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
    confidence: float = CONFIDENCE  # level of [low, high]; compare_all: simultaneous over the family

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


def mcnemar_exact_interval(x, y, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of mean(x) - mean(y) that inverts McNemar's exact test, given the discordant count.

    Clopper-Pearson for the share of discordant items x wins, scaled by the discordant share: it
    excludes zero exactly when McNemar's exact p-value is below 1 - confidence (the binomial at 1/2
    is symmetric, so the test's two-sided p-value is twice the smaller tail, the central test
    Clopper-Pearson inverts)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    k, m = int(((x == 1) & (y == 0)).sum()), int((x != y).sum())
    if m == 0:
        return 0.0, 0.0
    g = 1 - confidence
    lo = stats.beta.ppf(g / 2, k, m - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - g / 2, k + 1, m - k) if k < m else 1.0
    return float(m / n * (2 * lo - 1)), float(m / n * (2 * hi - 1))


def _signs(k: int, seed: int) -> tuple[np.ndarray, bool]:
    """Sign vectors for a sign-flip test over k units: all 2^k when that is at most N_RESAMPLES, else random."""
    if 2 ** k <= N_RESAMPLES:
        return 1 - 2 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1), True
    return np.random.default_rng(seed).choice(np.array([-1, 1]), size=(N_RESAMPLES, k)), False


def _flip_units(d: np.ndarray, codes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(sum of d, number of items) per unit: per cluster, or per item."""
    if codes is None:
        return d, np.ones(len(d))
    return np.bincount(codes, weights=d), np.bincount(codes).astype(float)


class SignFlip:
    """The sign-flip permutation test of a mean paired difference, over items or whole clusters.

    Under "no difference" each unit's difference is as likely positive as negative; the p-value
    is the share of sign assignments whose |sum| reaches the observed one (exact when 2^k is at
    most N_RESAMPLES). Shifting the differences by delta tests "the difference is delta", and the
    deltas it does not reject form the interval (test inversion): the interval and the test agree."""

    def __init__(self, d, codes: np.ndarray | None, seed: int):
        sums, sizes = _flip_units(np.asarray(d, dtype=float), codes)
        signs, self.exact = _signs(len(sums), seed)
        self.a, self.b = signs @ sums, signs @ sizes  # each assignment's sum at delta: a - delta * b
        self.total, self.n = float(sums.sum()), float(sizes.sum())
        self.k = len(sums)

    def p_value(self, delta: float = 0.0) -> float:
        observed = abs(self.total - delta * self.n)
        hits = int(np.sum(np.abs(self.a - delta * self.b) >= observed - 1e-9 * max(1.0, observed)))
        return hits / len(self.a) if self.exact else (hits + 1) / (len(self.a) + 1)

    def interval(self, confidence: float) -> tuple[float, float]:
        g, mean = 1 - confidence, self.total / self.n

        def edge(outer: float) -> float:  # bisection between the mean (kept) and outer
            inner = mean
            if self.p_value(outer) >= g:
                return outer
            for _ in range(30):
                mid = (inner + outer) / 2
                inner, outer = (mid, outer) if self.p_value(mid) >= g else (inner, mid)
            return inner

        low, high = edge(-1.0), edge(1.0)
        if self.p_value(0.0) >= g:  # the test keeps zero: so does its interval
            low, high = min(low, 0.0), max(high, 0.0)
        return low, high


def paired_test_name(x, y, codes: np.ndarray | None) -> str:
    """The paired test this module runs on two rows' scores (the power statements name it)."""
    if codes is not None:
        return f"cluster sign-flip permutation test ({int(codes.max()) + 1} clusters)"
    return "McNemar exact" if is_binary(x, y) else "sign-flip permutation test of the mean"


def difference_interval(x, y, confidence: float = CONFIDENCE, clusters=None, seed: int = 0) -> tuple[float, float]:
    """Interval of mean(x) - mean(y) on paired items, from the method that matches the paired test.

    Pass/fail scores on independent items: Bonett and Price's interval, widened where needed to
    the interval that inverts McNemar's exact test (so it holds zero whenever the test does not
    reject at 1 - confidence). Graded scores, or clustered items: the inverted sign-flip test."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    codes = cluster_codes(clusters, len(x))
    if codes is None and is_binary(x, y):
        bp, exact = paired_difference_ci(x, y, confidence), mcnemar_exact_interval(x, y, confidence)
        return min(bp[0], exact[0]), max(bp[1], exact[1])
    d = x - y
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    return SignFlip(d, codes, seed).interval(confidence)


@lru_cache(maxsize=65536)
def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value: the binomial at 1/2 is symmetric, so twice the smaller tail
    (what scipy's binomtest gives, computed directly: the fragility search asks it thousands of times)."""
    m = only_a + only_b
    return 1.0 if m == 0 else float(min(1.0, 2 * stats.binom.cdf(min(only_a, only_b), m, 0.5)))


def _paired_p(x: np.ndarray, y: np.ndarray, codes: np.ndarray | None, seed: int) -> float:
    d = x - y
    if not np.any(d != 0):
        return 1.0
    if codes is None and is_binary(x, y):
        return mcnemar_p(int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum()))
    return SignFlip(d, codes, seed).p_value()


def paired_compare(name_a: str, a, name_b: str, b, seed: int = 0, alpha: float = ALPHA, clusters=None,
                   confidence: float | None = None, interval: bool = True) -> Comparison:
    """Is a better or worse than b on the same items? Never 'yes' on a tie.

    The direction is the sign of the mean difference, and every test tests exactly that mean
    (McNemar's discordant pairs for pass/fail on independent items; a sign-flip permutation test of
    the mean difference otherwise, flipping whole clusters when items share one), so a significant
    result always points the way the means differ. `significant` here is uncorrected; `compare_all`
    corrects it over the family. The interval is at `confidence` (default 1 - alpha); interval=False
    leaves it NaN (the verdict's fragility search needs only the tests).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(x)
    confidence = 1 - alpha if confidence is None else confidence
    if n == 0:
        return Comparison(name_a, name_b, 0.0, float("nan"), float("nan"), 1.0, "no items", False, 1.0, None, 0,
                          confidence)
    diff = float((x - y).mean())
    better = None if diff == 0 else (name_a if diff > 0 else name_b)
    codes = cluster_codes(clusters, n)
    p = _paired_p(x, y, codes, seed)
    test = paired_test_name(x, y, codes)
    if test == "McNemar exact":
        test += f" ({int(((x == 1) & (y == 0)).sum())} vs {int(((x == 0) & (y == 1)).sum())} discordant)"
    low, high = difference_interval(x, y, confidence, clusters, seed) if interval else (float("nan"),) * 2
    return Comparison(name_a, name_b, diff, float(low), float(high), p, test, bool(p < alpha and diff != 0), p,
                      better, n, confidence)


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


def simultaneous_confidence(tests: int, alpha: float = ALPHA) -> float:
    """The Bonferroni level at which m intervals hold together with probability 1 - alpha.

    Holm's adjusted p-value is at most m times the raw one, so an interval at this level that
    excludes zero (raw p < alpha / m) always comes with a Holm-significant test: no interval
    shown beside a corrected test claims a gap the test does not."""
    return 1 - alpha / max(1, tests)


def compare_all(scores: dict[str, list[float]], seed: int = 0, alpha: float = ALPHA, clusters=None,
                intervals: bool = True) -> list[Comparison]:
    """Every pair of rows on the same items, as one family: significance after Holm's correction, and
    simultaneous intervals at the family's Bonferroni level."""
    names = list(scores)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    level = simultaneous_confidence(len(pairs), alpha)
    out = [paired_compare(a, scores[a], b, scores[b], seed, alpha, clusters, level, intervals) for a, b in pairs]
    for c, adjusted in zip(out, holm([c.p_value for c in out])):
        c.p_adjusted = adjusted
        c.significant = bool(adjusted < alpha and c.diff != 0)
    return out


# ---------------------------------------------------------------- power


def min_discordant(alpha: float) -> int:
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
    lo, hi = 1, max(min_discordant(alpha), 2)
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


def _z(p: float) -> float:
    return float(stats.norm.ppf(p))


def difference_variance(d, codes: np.ndarray | None = None, binary: bool = False) -> float:
    """Per-item variance of a paired difference for planning, times the design effect when items cluster.

    Pass/fail pairs use Bonett and Price's adjusted discordant shares (one added to each count),
    the same variance their interval uses, so a plan never rests on a zero variance."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if binary:
        up, down = (float((d > 0).sum()) + 1) / (n + 2), (float((d < 0).sum()) + 1) / (n + 2)
        var = up + down - (up - down) ** 2
    else:
        var = float(np.var(d))
    return var * design_effect(d, codes)


def noninferiority_items(d, margin: float, codes: np.ndarray | None = None, binary: bool = False,
                         confidence: float = CONFIDENCE, power: float = POWER) -> int | None:
    """Eval items at which the upper end of the `confidence` interval of the difference d (a contender's
    score minus the pick's, per item) falls below `margin` with probability `power`, if the items to come
    keep the observed mean and spread (the normal form of the interval: mean + z * sd / sqrt(n)).

    None when the observed difference already reaches the margin: more such items cannot show it."""
    d = np.asarray(d, dtype=float)
    gap = float(d.mean()) if len(d) else 0.0
    if gap >= margin:
        return None
    var = difference_variance(d, codes, binary)
    n = (_z(0.5 + confidence / 2) + _z(power)) ** 2 * var / (margin - gap) ** 2
    return max(1, math.ceil(n - 1e-9))


def normal_items_needed(d, codes: np.ndarray | None, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Items for the sign-flip test (two-sided, alpha) to find the observed mean difference with `power`,
    by the test's normal approximation. None when there is no difference to find or it needs > MAX_ITEMS."""
    d = np.asarray(d, dtype=float)
    gap = abs(float(d.mean())) if len(d) else 0.0
    if gap == 0:
        return None
    n = math.ceil((_z(1 - alpha / 2) + _z(power)) ** 2 * difference_variance(d, codes) / gap ** 2 - 1e-9)
    return max(1, n) if n <= MAX_ITEMS else None


def normal_detectable_difference(n: int, d, codes: np.ndarray | None, alpha: float = ALPHA,
                                 power: float = POWER) -> float | None:
    """The smallest mean difference the sign-flip test on n items finds with `power` (normal approximation),
    with the observed spread of d."""
    if n <= 0:
        return None
    var = difference_variance(d, codes)
    return min(1.0, (_z(1 - alpha / 2) + _z(power)) * math.sqrt(var / n)) if var > 0 else None
