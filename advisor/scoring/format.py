"""Format scorers: does the answer match a pattern the task states (`scoring.regex`, `scoring.format`).

Patterns are matched against the answer as written: `.` does not cross a line break, so a
one-line format is not passed by a multi-line answer. A task whose answers may span lines
says so with `scoring.multiline: true`.
"""
from __future__ import annotations

import re

from advisor.task import Example, ScoringSpec


def _flags(spec: ScoringSpec) -> int:
    return re.DOTALL if spec.multiline else 0


def passes_format(answer: str, spec: ScoringSpec) -> bool | None:
    """None when the task states no format."""
    if not spec.format:
        return None
    return re.fullmatch(spec.format, answer.strip(), flags=_flags(spec)) is not None


def content(text: str, spec: ScoringSpec) -> str:
    """What a reply says, without the fixed parts of its format: the format's `(?P<content>...)` group
    when the task's format names one and the text matches it, else the whole text."""
    if spec.format and "(?P<content>" in spec.format:
        m = re.fullmatch(spec.format, text.strip(), flags=_flags(spec))
        if m and m.group("content") is not None:
            return m.group("content").strip()
    return text.strip()


def regex(answer: str, ex: Example, spec: ScoringSpec) -> float:
    return float(re.search(spec.regex, answer, flags=_flags(spec)) is not None)


def format_score(answer: str, ex: Example, spec: ScoringSpec) -> float:
    return float(bool(passes_format(answer, spec)))
