"""Scoring answers and the statistics that say how sure we are.

Per-item scores are in [0, 1]. Confidence intervals are percentile bootstraps
(scipy); paired comparisons use McNemar's exact test for pass/fail scores and a
paired bootstrap of the mean difference otherwise.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import stats

from advisor import plugins
from advisor.task import Example, ScoringSpec

CONFIDENCE = 0.95
N_RESAMPLES = 2000
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Punctuation goes, except inside numbers ("12.99", "1-800-555-0199").
_PUNCT = re.compile(r"(?<!\d)[^\w\s]|[^\w\s](?!\d)")


def normalize(text: str) -> str:
    text = _PUNCT.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(answer: str, reference: str) -> float:
    a, r = normalize(answer).split(), normalize(reference).split()
    common = sum((Counter(a) & Counter(r)).values())
    if not a or not r or common == 0:
        return float(a == r)
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def _choice(answer: str, ex: Example) -> float:
    """Multiple choice: the first option letter (A, B, ...) or option text the answer names."""
    letters = [chr(ord("A") + i) for i in range(len(ex.choices))]
    m = re.search(r"\b([A-Z])\b", answer.strip())
    picked = m.group(1) if m and m.group(1) in letters else None
    if picked is None:
        for letter, option in zip(letters, ex.choices):
            if normalize(option) and normalize(option) in normalize(answer):
                picked = letter
                break
    refs = {r.strip().upper() if len(r.strip()) == 1 else
            (letters[ex.choices.index(r)] if r in ex.choices else r) for r in ex.references}
    return float(picked is not None and picked in refs)


def passes_format(answer: str, spec: ScoringSpec) -> bool | None:
    if not spec.format:
        return None
    return re.fullmatch(spec.format, answer.strip(), flags=re.DOTALL) is not None


def method_for(ex: Example, spec: ScoringSpec) -> str:
    for tag in ex.tags:
        if tag in spec.by_tag:
            return spec.by_tag[tag]
    return spec.method


def score(answer: str, ex: Example, spec: ScoringSpec) -> float:
    method = method_for(ex, spec)
    refs = ex.references
    if method == "exact":
        return float(any(normalize(answer) == normalize(r) for r in refs))
    if method == "contains":
        padded = f" {normalize(answer)} "
        return float(any(normalize(r) and f" {normalize(r)} " in padded for r in refs))
    if method == "f1":
        return max((token_f1(answer, r) for r in refs), default=0.0)
    if method == "choice":
        return _choice(answer, ex)
    if method == "regex":
        return float(re.search(spec.regex, answer, flags=re.DOTALL) is not None)
    if method == "format":
        return float(bool(passes_format(answer, spec)))
    value = float(plugins.scorer(method)(answer, ex))
    if not 0 <= value <= 1:
        raise ValueError(f"scoring plug-in {method!r} returned {value} for example {ex.id!r}; scores must be in [0, 1]")
    return value


def agree(a: str, b: str, ex: Example, spec: ScoringSpec) -> bool:
    """Two answers agree when their normalized text is equal, or when both are correct
    with the same format verdict (the same fact in other words). Two wrong answers
    agree only if they say the same thing: being wrong alike is not consistency."""
    if normalize(a) == normalize(b):
        return True
    sa = score(a, ex, spec)
    return sa > 0 and sa == score(b, ex, spec) and passes_format(a, spec) == passes_format(b, spec)


# ------------------------------------------------------------------ statistics


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
