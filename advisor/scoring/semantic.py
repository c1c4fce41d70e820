"""Meaning-based checks with the task's sentence embedder (the one retrieval uses).

Two texts say the same thing when their embeddings' cosine similarity reaches the
task's `scoring.semantic_threshold` and no rule of advisor/scoring/meaning.py finds a
contradiction: sentence embeddings barely tell "covered for 18 months" from "covered for
18 days" (cosine 0.95 with MiniLM) nor "can offer" from "cannot offer" (0.90), so the
quantities, the polarity, the names and contrasting words must agree too. A bare answer
("The answer is: 3 days") is compared by its quantities alone: there is nothing else to embed.
"""
from __future__ import annotations

from dataclasses import dataclass

from advisor.scoring.format import content
from advisor.scoring.lexical import normalize
from advisor.scoring.meaning import Contradiction, Direction, contradiction, quantities_decide
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

    def check(self, said: str, other: str, threshold: float,
              direction: Direction = "same") -> tuple[bool, float, Contradiction | None]:
        """(same meaning?, cosine, the contradiction found when the cosine passed).

        `direction` says how quantities must relate (advisor.scoring.meaning.Direction)."""
        sim = self.cosine(said, other)
        if sim < threshold and not quantities_decide(said, other):
            return False, sim, None
        found = contradiction(said, other, direction)
        return found is None, sim, found

    def same_meaning(self, a: str, b: str, threshold: float) -> bool:
        return normalize(a) == normalize(b) or self.check(a, b, threshold)[0]


def semantic(answer: str, ex: Example, spec: ScoringSpec, similarity: Similarity) -> Part:
    """1 when the answer's content is as close as `semantic_threshold` to a reference's, states every
    quantity that reference states and contradicts it by no rule (advisor.scoring.meaning); the best raw
    similarity is kept either way, and why a close reference was refused."""
    said = content(answer, spec)
    best, passed, refused = -1.0, False, []
    for ref in ex.references:
        same, sim, found = similarity.check(said, content(ref, spec), spec.semantic_threshold, "states")
        best, passed = max(best, sim), passed or same
        if found is not None:
            refused.append(found)
    details = {"similarity": round(best, 4)}
    if refused and not passed:
        if refused[0].rule == "quantities":
            details["missing_quantities"] = list(refused[0].differ)
        else:
            details["contradictions"] = [{"comparer": "semantic", **refused[0].as_dict()}]
    return Part(float(passed), details)
