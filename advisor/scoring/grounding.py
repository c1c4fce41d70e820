"""Grounding of retrieval rows: was the right document retrieved, and does the answer rest on what was?

- context recall: the eval item's gold `source` is among the retrieved documents.
- faithfulness: the share of the answer's sentences that a retrieved passage supports,
  measured with the task's embedder: a sentence is supported when its cosine similarity
  to some retrieved passage reaches `scoring.faithfulness_threshold`, that passage states
  every quantity the sentence states, and the passage's sentences it speaks of do not
  contradict it (negation, names, contrasting words: advisor/scoring/meaning.py). A bare
  answer ("The answer is: 3 days") is supported by a passage that states its quantities.
  Citation markers a reply copied from the prompt ("[1] (source: doc.md > Section)") are
  not read as quantities, nor is a number cut off at the end of a truncated reply ("by 3").
  It is a proxy, not entailment: it catches answers about something the passages do not
  cover, numbers they do not give and the contradictions the rules see; not a
  contradiction in other words.

An answer scored right whose gold source was not retrieved, or which no passage
supports, is right for a reason retrieval did not give it (the model's own memory, a
lucky guess): the report lists such answers.
"""
from __future__ import annotations

import re

from advisor.scoring.format import content
from advisor.scoring.lexical import quantities
from advisor.scoring.meaning import Contradiction, contradiction, quantities_decide, strip_markers
from advisor.scoring.semantic import Similarity
from advisor.task import ScoringSpec

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A reply cut off by the token limit can end in a number whose unit never came ("...raises it by 3").
_CUT_OFF_NUMBER = re.compile(r"[$€£¥]?\d+(?:[.,:-]\d+)*\s*$")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if re.search(r"\w", s)]


def context_recall(source: str | None, retrieved: list[str]) -> bool | None:
    """None when the eval item names no gold source."""
    return None if not source else source in retrieved


def claims(answer: str, spec: ScoringSpec) -> list[str]:
    """The answer's sentences, without citation markers; an unfinished last sentence loses a trailing number."""
    said = sentences(strip_markers(content(answer, spec)))
    if said and not re.search(r"[.!?\"')]$", said[-1]):
        said[-1] = _CUT_OFF_NUMBER.sub("", said[-1]).strip()
    return [s for s in said if re.search(r"\w", s)]


def spoken_of(sentence: str, passage: str, similarity: Similarity) -> list[str]:
    """The passage's sentences a sentence speaks of: the closest of those sharing the most quantities with it,
    and the closest of all unless that one states a quantity the sentence does not (then it is about another
    fact: "With Nimbus Plus, clips are kept for 60 days" is not what "...3 days if you don't have Nimbus Plus"
    denies)."""
    def closest(options: list[str]) -> str:
        return max(options, key=lambda p: similarity.cosine(sentence, p))

    parts, said = sentences(passage) or [passage], quantities(sentence)
    most = max(len(said & quantities(p)) for p in parts)
    near = [closest([p for p in parts if len(said & quantities(p)) == most])] if most else []
    if quantities(nearest := closest(parts)) <= said and nearest not in near:
        near.append(nearest)
    return near


def supported(sentence: str, passage: str, spec: ScoringSpec,
              similarity: Similarity) -> tuple[bool, Contradiction | None]:
    """Does this passage support this sentence? (and the contradiction that refused it, if any)"""
    if similarity.cosine(sentence, passage) < spec.faithfulness_threshold and not quantities_decide(sentence, passage):
        return False, None
    found = contradiction(sentence, passage, "supported", rules=("quantities",))
    if found is None:
        found = next(filter(None, (contradiction(sentence, p, rules=("negation", "names", "contrast"))
                                   for p in spoken_of(sentence, passage, similarity))), None)
    return found is None, found


def support(answer: str, passages: list[str], spec: ScoringSpec,
            similarity: Similarity) -> tuple[float | None, list[dict]]:
    """Faithfulness (None when nothing was retrieved or the answer has no sentence), and why each sentence
    that some passage was close to was refused."""
    said = claims(answer, spec)
    passages = [strip_markers(p) for p in passages]
    if not passages or not said:
        return None, []
    n_supported, refused = 0, []
    for sentence in said:
        verdicts = [supported(sentence, p, spec, similarity) for p in passages]
        if any(ok for ok, _ in verdicts):
            n_supported += 1
        elif found := next((c for _, c in verdicts if c is not None), None):
            refused.append({"comparer": "faithfulness", **found.as_dict(), "sentence": sentence})
    return n_supported / len(said), refused


def faithfulness(answer: str, passages: list[str], spec: ScoringSpec, similarity: Similarity) -> float | None:
    """Share of the answer's sentences (the format's fixed parts left out) that a retrieved passage supports;
    None when nothing was retrieved or the answer has no sentence."""
    return support(answer, passages, spec, similarity)[0]
