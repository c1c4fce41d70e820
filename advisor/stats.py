"""How sure we are: confidence intervals and paired comparisons of per-item scores.

Intervals are percentile bootstraps (scipy); paired comparisons use McNemar's exact
test for pass/fail scores and a paired bootstrap of the mean difference with a
Wilcoxon signed-rank test otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def mean_ci(values, seed: int = 0) -> Estimate:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    if len(x) == 1 or np.all(x == x[0]):
        return Estimate(float(x.mean()), float(x.mean()), float(x.mean()), len(x))
    res = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return Estimate(float(x.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high), len(x))


@dataclass
class Comparison:
    a: str
    b: str
    diff: float  # mean(a) - mean(b)
    low: float
    high: float
    p_value: float
    test: str
    significant: bool

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def paired_compare(name_a: str, a, name_b: str, b, seed: int = 0, alpha: float = 0.05) -> Comparison:
    """Is a better or worse than b on the same items? Never 'yes' on a tie."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    diff = float(d.mean()) if len(d) else 0.0
    if len(d) == 0 or np.all(d == d[0]):
        low = high = diff
    else:
        res = stats.bootstrap((d,), np.mean, confidence_level=1 - alpha, n_resamples=N_RESAMPLES,
                              method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    binary = set(np.unique(np.concatenate([x, y]))) <= {0.0, 1.0}
    if binary:
        only_a, only_b = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        test = f"McNemar exact ({only_a} vs {only_b} discordant)"
    else:
        p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
        test = "Wilcoxon signed-rank"
    return Comparison(name_a, name_b, diff, low, high, float(p), test, bool(p < alpha and diff != 0))
