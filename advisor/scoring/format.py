"""Format scorers: does the answer match a pattern the task states (`scoring.regex`, `scoring.format`)."""
from __future__ import annotations

import re

from advisor.task import Example, ScoringSpec


def passes_format(answer: str, spec: ScoringSpec) -> bool | None:
    """None when the task states no format."""
    if not spec.format:
        return None
    return re.fullmatch(spec.format, answer.strip(), flags=re.DOTALL) is not None


def regex(answer: str, ex: Example, spec: ScoringSpec) -> float:
    return float(re.search(spec.regex, answer, flags=re.DOTALL) is not None)


def format_score(answer: str, ex: Example, spec: ScoringSpec) -> float:
    return float(bool(passes_format(answer, spec)))
