"""Scoring: per-item scores in [0, 1], and agreement between two answers.

The registry maps each method a task file may name (`scoring.method`,
`scoring.by_tag`, each a name or `{all_of: [...]}`) to a function
`(answer, example, spec, tools) -> float | Part`; one module per family of scorers:
lexical (exact, contains, f1, choice), format (regex, format), structured
(json_fields), semantic (semantic), judge (judge). `tools` carries what some scorers
need beyond the text: the task's embedder (loaded on first use) and the LLM judge.
Plug-in methods come from installed packages through the `advisor.scorers` entry point
group (advisor/plugins.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from advisor import plugins
from advisor.scoring import format as format_scorers
from advisor.scoring import lexical
from advisor.scoring.format import content, passes_format
from advisor.scoring.judge import Judge
from advisor.scoring.lexical import normalize, quantities, token_f1
from advisor.scoring.semantic import Part, Similarity, semantic
from advisor.scoring.structured import json_fields, parse_object, same_fields
from advisor.task import Example, ScoringSpec, describe_method, method_names


class Tools:
    """What scorers need beyond the text: the task's embedder (loaded on first use) and the judge, if any."""

    def __init__(self, embedder_factory: Callable[[], object] | None = None, judge: Judge | None = None):
        self._factory = embedder_factory
        self._similarity: Similarity | None = None
        self.judge = judge

    @property
    def similarity(self) -> Similarity | None:
        if self._similarity is None and self._factory is not None:
            self._similarity = Similarity(self._factory())
        return self._similarity


def _needs_similarity(tools: Tools | None, method: str) -> Similarity:
    sim = tools.similarity if tools else None
    if sim is None:
        raise ValueError(f"scoring method {method!r} needs the task's embedder (pass scoring.Tools)")
    return sim


def _judge(answer: str, ex: Example, spec: ScoringSpec, tools: Tools | None) -> Part:
    if tools is None or tools.judge is None:
        raise ValueError("scoring method 'judge' needs a judge (scoring.judge in the task, passed in scoring.Tools)")
    v = tools.judge.verdicts([(ex, answer)])[0]
    return Part(float(bool(v.correct)), {"judge": v.as_dict()})


def _plain(f: Callable[[str, Example, ScoringSpec], float]):
    return lambda answer, ex, spec, tools: f(answer, ex, spec)


Scorer = Callable[[str, Example, ScoringSpec, "Tools | None"], "float | Part"]

METHODS: dict[str, Scorer] = {
    "exact": _plain(lexical.exact),
    "contains": _plain(lexical.contains),
    "f1": _plain(lexical.f1),
    "choice": _plain(lexical.choice),
    "regex": _plain(format_scorers.regex),
    "format": _plain(format_scorers.format_score),
    "json_fields": lambda a, ex, spec, tools: json_fields(a, ex, spec, tools.similarity if tools else None),
    "semantic": lambda a, ex, spec, tools: semantic(a, ex, spec, _needs_similarity(tools, "semantic")),
    "judge": _judge,
}


@dataclass(frozen=True)
class Score:
    """One answer's score, how it was reached, and what each method saw.

    `value` is what counts toward accuracy; an uncalibrated judge's part is left out of it
    (`counts` is False when nothing else scored the item)."""

    value: float
    method: str
    parts: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    counts: bool = True


def names() -> list[str]:
    """Every method a task may name: built in, then installed plug-ins."""
    return list(METHODS) + [n for n in plugins.names(plugins.SCORER_GROUP) if n not in METHODS]


def method_for(ex: Example, spec: ScoringSpec):
    return spec.method_for(ex.tags)


def _one(method: str, answer: str, ex: Example, spec: ScoringSpec, tools: Tools | None) -> Part:
    if method in METHODS:
        out = METHODS[method](answer, ex, spec, tools)
        return out if isinstance(out, Part) else Part(float(out), {})
    value = float(plugins.scorer(method)(answer, ex))
    if not 0 <= value <= 1:
        raise ValueError(f"scoring plug-in {method!r} returned {value} for example {ex.id!r}; scores must be in [0, 1]")
    return Part(value, {})


def score_item(answer: str, ex: Example, spec: ScoringSpec, tools: Tools | None = None) -> Score:
    """Score one answer with the item's method; an `all_of` scores its weakest part."""
    method = method_for(ex, spec)
    parts, details = {}, {}
    for name in method_names(method):
        part = _one(name, answer, ex, spec, tools)
        parts[name] = part.value
        details.update(part.details)
    judge_counts = tools is not None and tools.judge is not None and tools.judge.counts
    counted = {n: v for n, v in parts.items() if n != "judge" or judge_counts}
    value = min(counted.values()) if counted else min(parts.values())
    return Score(value, describe_method(method), parts, details, counts=bool(counted))


def score(answer: str, ex: Example, spec: ScoringSpec, tools: Tools | None = None) -> float:
    return score_item(answer, ex, spec, tools).value


def agree(a: str, b: str, ex: Example, spec: ScoringSpec, tools: Tools | None = None) -> bool:
    """Two answers agree when they say the same thing, whatever their scores.

    Structured replies (items scored by json_fields): the same parsed fields, free text by
    meaning. Text: the same normalised words, or the same meaning (cosine at least
    `semantic_threshold` and the same quantities) of what the replies say, the format's
    fixed parts left out. Without an embedder only the normalised words are compared."""
    if normalize(a) == normalize(b):
        return True
    if "json_fields" in method_names(method_for(ex, spec)):
        pa, pb = parse_object(a), parse_object(b)
        if pa is not None or pb is not None:
            return pa is not None and pb is not None and same_fields(pa, pb, spec, tools.similarity if tools else None)
    sim = tools.similarity if tools else None
    return sim is not None and sim.same_meaning(content(a, spec), content(b, spec), spec.semantic_threshold)


__all__ = ["METHODS", "Part", "Score", "Similarity", "Tools", "agree", "content", "method_for", "names", "normalize",
           "parse_object", "passes_format", "quantities", "score", "score_item", "token_f1"]
