"""Meaning-based checks with the task's sentence embedder (the one retrieval uses).

Two texts say the same thing when their embeddings' cosine similarity reaches the
task's `scoring.semantic_threshold` and they state the same quantities: sentence
embeddings barely tell "covered for 18 months" from "covered for 18 days" (cosine
0.95 with MiniLM), so numbers with their currency, percent sign or unit must match too.
"""
from __future__ import annotations

from dataclasses import dataclass

from advisor.scoring.format import content
from advisor.scoring.lexical import normalize, quantities
from advisor.task import Example, ScoringSpec


@dataclass(frozen=True)
class Part:
    """One method's score of one answer, with what it saw (kept per item in results.json)."""

    value: float
    details: dict


class Similarity:
    """Cosine similarity of texts under an embedder, each text embedded once per run."""

    def __init__(self, embedder):
        self.embedder = embedder
        self._vectors: dict[str, object] = {}

    def vectors(self, texts: list[str]):
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.embedder.encode(missing)))
        return [self._vectors[t] for t in texts]

    def cosine(self, a: str, b: str) -> float:
        va, vb = self.vectors([a, b])
        return float(va @ vb)  # the embedder L2-normalizes

    def same_meaning(self, a: str, b: str, threshold: float) -> bool:
        if normalize(a) == normalize(b):
            return True
        return quantities(a) == quantities(b) and self.cosine(a, b) >= threshold


def semantic(answer: str, ex: Example, spec: ScoringSpec, similarity: Similarity) -> Part:
    """1 when the answer's content is as close as `semantic_threshold` to a reference's and states every
    quantity that reference states; the best raw similarity is kept either way."""
    said = content(answer, spec)
    best, passed, missing = -1.0, False, []
    for ref in ex.references:
        want = content(ref, spec)
        sim = similarity.cosine(said, want)
        lacking = sorted(quantities(want) - quantities(said))
        best = max(best, sim)
        if sim >= spec.semantic_threshold and not lacking:
            passed = True
        elif sim >= spec.semantic_threshold:
            missing = lacking
    details = {"similarity": round(best, 4)}
    if missing and not passed:
        details["missing_quantities"] = missing
    return Part(float(passed), details)
