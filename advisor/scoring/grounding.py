"""Grounding of retrieval rows: was the right document retrieved, and does the answer rest on what was?

- context recall: the eval item's gold `source` is among the retrieved documents.
- faithfulness: the share of the answer's sentences that a retrieved passage supports,
  measured with the task's embedder: a sentence is supported when its cosine similarity
  to some retrieved passage reaches `scoring.faithfulness_threshold` and that passage
  states every quantity the sentence states. It is an embedding proxy, not entailment:
  it catches answers about something the passages do not cover, and numbers the
  passages do not give; it cannot catch a subtle contradiction in the same words.

An answer scored right whose gold source was not retrieved, or which no passage
supports, is right for a reason retrieval did not give it (the model's own memory, a
lucky guess): the report lists such answers.
"""
from __future__ import annotations

import re

from advisor.scoring.format import content
from advisor.scoring.lexical import quantities
from advisor.scoring.semantic import Similarity
from advisor.task import ScoringSpec

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if re.search(r"\w", s)]


def context_recall(source: str | None, retrieved: list[str]) -> bool | None:
    """None when the eval item names no gold source."""
    return None if not source else source in retrieved


def faithfulness(answer: str, passages: list[str], spec: ScoringSpec, similarity: Similarity) -> float | None:
    """Share of the answer's sentences (the format's fixed parts left out) that a retrieved passage supports;
    None when nothing was retrieved or the answer has no sentence."""
    said = sentences(content(answer, spec))
    if not passages or not said:
        return None
    supported = 0
    for sentence in said:
        need = quantities(sentence)
        supported += any(similarity.cosine(sentence, p) >= spec.faithfulness_threshold and need <= quantities(p)
                         for p in passages)
    return supported / len(said)
