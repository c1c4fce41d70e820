"""Lexical scorers: the answer's words against the references' (exact, contains, token F1, choice)."""
from __future__ import annotations

import re
from collections import Counter

from advisor.task import Example

_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Punctuation goes, except what carries meaning: inside numbers ("12.99", "1-800-555-0199"), a currency sign
# before a number ("$149") and a percent or degree sign after one ("15%", "4°"), so "15%" is not "15 days".
_PUNCT = re.compile(r"[$€£¥](?=\d)|(?<=\d)[%°]|(?<=\d)[^\w\s](?=\d)|(?P<drop>[^\w\s])")
# A number with the currency, percent or unit that says what it counts: "$14.95", "15%", "18 months".
UNITS = ("second", "minute", "hour", "day", "week", "month", "year", "business day", "foot", "feet", "inch",
         "mile", "metre", "meter", "km", "cm", "mm", "kg", "g", "lb", "pound", "ounce", "oz", "litre", "liter",
         "ml", "watt", "amp", "volt", "degree", "percent", "dollar", "cent", "euro", "gb", "mb", "tb", "device",
         "time", "item", "pm", "am")
_QUANTITY = re.compile(r"(?<![\w.])([$€£¥]?\d+(?:[.,:-]\d+)*(?:[%°])?)(?:\s+(" +
                       "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True)) + r")(?:e?s)?\b)?")


def normalize(text: str) -> str:
    """Lower case, articles and punctuation dropped; numbers keep their currency, percent and degree signs."""
    text = _PUNCT.sub(lambda m: " " if m.group("drop") else m.group(0), text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def quantities(text: str) -> set[str]:
    """The numbers a text states, each with its currency/percent sign or unit word ("$149", "15%", "18 month").

    Sentence embeddings barely tell "18 months" from "18 days", so meaning-based checks
    also require the quantities to match."""
    found = set()
    for m in _QUANTITY.finditer(normalize(text)):
        unit = m.group(2)
        found.add(f"{m.group(1)} {unit}" if unit else m.group(1))
    return found


def token_f1(answer: str, reference: str) -> float:
    a, r = normalize(answer).split(), normalize(reference).split()
    common = sum((Counter(a) & Counter(r)).values())
    if not a or not r or common == 0:
        return float(a == r)
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def exact(answer: str, ex: Example, spec) -> float:
    return float(any(normalize(answer) == normalize(r) for r in ex.references))


def contains(answer: str, ex: Example, spec) -> float:
    padded = f" {normalize(answer)} "
    return float(any(normalize(r) and f" {normalize(r)} " in padded for r in ex.references))


def f1(answer: str, ex: Example, spec) -> float:
    return max((token_f1(answer, r) for r in ex.references), default=0.0)


def choice(answer: str, ex: Example, spec) -> float:
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
