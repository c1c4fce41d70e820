"""Scoring: per-item scores in [0, 1], and agreement between two answers.

The registry maps each method a task file may name (`scoring.method`,
`scoring.by_tag`) to a function `score(answer, example, spec) -> float`; one
module per family of scorers. Plug-in methods come from installed packages
through the `advisor.scorers` entry point group (advisor/plugins.py).
"""
from __future__ import annotations

from typing import Callable

from advisor import plugins
from advisor.scoring import format as format_scorers
from advisor.scoring import lexical
from advisor.scoring.format import passes_format
from advisor.scoring.lexical import normalize, token_f1
from advisor.task import Example, ScoringSpec

Scorer = Callable[[str, Example, ScoringSpec], float]

METHODS: dict[str, Scorer] = {
    "exact": lexical.exact,
    "contains": lexical.contains,
    "f1": lexical.f1,
    "choice": lexical.choice,
    "regex": format_scorers.regex,
    "format": format_scorers.format_score,
}


def names() -> list[str]:
    """Every method a task may name: built in, then installed plug-ins."""
    return list(METHODS) + [n for n in plugins.names(plugins.SCORER_GROUP) if n not in METHODS]


def method_for(ex: Example, spec: ScoringSpec) -> str:
    for tag in ex.tags:
        if tag in spec.by_tag:
            return spec.by_tag[tag]
    return spec.method


def score(answer: str, ex: Example, spec: ScoringSpec) -> float:
    method = method_for(ex, spec)
    if method in METHODS:
        return METHODS[method](answer, ex, spec)
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


__all__ = ["METHODS", "agree", "method_for", "names", "normalize", "passes_format", "score", "token_f1"]
