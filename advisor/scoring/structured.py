"""Structured replies: parse the reply as JSON and compare each field with the reference's.

Enums, numbers, booleans and null are compared exactly (a closed vocabulary is right or
not); the fields the task names in `scoring.free_text_fields` are compared by meaning.
The score is the share of the reference's fields the reply gets right; which fields were
right is kept per item. Whether the reply is well-formed is the format metric's question:
a JSON object inside prose is still read here, so the two measure different things.
"""
from __future__ import annotations

import json

from advisor.scoring.semantic import Part, Similarity
from advisor.task import Example, ScoringSpec


def parse_object(text: str) -> dict | None:
    """The reply as a JSON object: the whole text, else the first object in it; None if there is none."""
    text = text.strip()
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def field_right(name: str, got, want, spec: ScoringSpec, similarity: Similarity | None) -> bool:
    if name in spec.free_text_fields and isinstance(got, str) and isinstance(want, str):
        if similarity is None:
            raise ValueError("comparing free-text fields by meaning needs the task's embedder")
        return similarity.same_meaning(got, want, spec.semantic_threshold)
    if isinstance(got, bool) or isinstance(want, bool):  # true is not 1
        return type(got) is type(want) and got == want
    return type(got) is type(want) and got == want or (
        isinstance(got, (int, float)) and isinstance(want, (int, float)) and got == want)


def compare(got: dict | None, want: dict, spec: ScoringSpec, similarity: Similarity | None) -> dict[str, bool]:
    """Each field of the reference: is the reply's value right? (a missing field is wrong)"""
    return {k: got is not None and k in got and field_right(k, got[k], v, spec, similarity) for k, v in want.items()}


def refused_fields(got: dict | None, want: dict, spec: ScoringSpec, similarity: Similarity | None) -> list[dict]:
    """Why free-text fields close in meaning were refused: the contradiction each shows (advisor.scoring.meaning).
    A field with a contradiction is wrong (same_meaning refuses it), so every one listed is a wrong field."""
    out = []
    for name in spec.free_text_fields:
        if similarity is not None and got and isinstance(got.get(name), str) and isinstance(want.get(name), str):
            found = similarity.check(got[name], want[name], spec.semantic_threshold)[2]
            if found is not None:
                out.append({"comparer": f"json_fields:{name}", **found.as_dict()})
    return out


def json_fields(answer: str, ex: Example, spec: ScoringSpec, similarity: Similarity | None) -> Part:
    got = parse_object(answer)
    best: dict[str, bool] = {}
    best_ref: dict = {}
    for ref in ex.references:
        want = json.loads(ref)  # load_task checked that every reference of these items is a JSON object
        fields = compare(got, want, spec, similarity)
        if not best or sum(fields.values()) / max(len(fields), 1) > sum(best.values()) / max(len(best), 1):
            best, best_ref = fields, want
    value = sum(best.values()) / len(best) if best else float(got == {})
    details = {"fields": best, "parsed": got is not None}
    if refused := refused_fields(got, best_ref, spec, similarity):  # a contradiction makes its field wrong
        details["contradictions"] = refused
    return Part(value, details)


def same_fields(a: dict, b: dict, spec: ScoringSpec, similarity: Similarity | None) -> bool:
    """Two parsed replies say the same thing: the same keys, each value the same (free text by meaning)."""
    return a.keys() == b.keys() and all(field_right(k, a[k], b[k], spec, similarity) for k in a)
