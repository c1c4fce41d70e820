"""Eval items that repeat train items: a leak that makes fine-tuning look better than it is.

An adapter trained on an eval question has seen the answer; a few-shot prompt may
carry it too. Two questions count as the same when their normalised word n-grams
(lower case, punctuation and spacing ignored) overlap by at least `threshold`
(Jaccard). No model is needed, so it runs in `advisor validate` on any machine.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from advisor.task import Example, Task

THRESHOLD = 0.8  # Jaccard of word 3-grams; 1.0 means the same words in the same order
NGRAM = 3


@dataclass(frozen=True)
class Overlap:
    eval_id: str
    train_id: str
    similarity: float
    eval_input: str
    train_input: str
    method: str = "3-gram"  # or "embedding" (cosine)

    def __str__(self) -> str:
        kind = "duplicates" if self.similarity >= 1.0 else f"nearly duplicates ({self.method} {self.similarity:.2f})"
        return f"eval {self.eval_id!r} {kind} train {self.train_id!r}: {self.eval_input!r} ~ {self.train_input!r}"


def words(text: str) -> list[str]:
    """Lower-case words, accents folded to their NFKC form, punctuation dropped."""
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def shingles(text: str, n: int = NGRAM) -> frozenset[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:  # short questions: the whole of it is one shingle
        return frozenset([tuple(w)]) if w else frozenset()
    return frozenset(tuple(w[i : i + n]) for i in range(len(w) - n + 1))


def find_overlaps(train: list[Example], evaluated: list[Example], threshold: float = THRESHOLD,
                  n: int = NGRAM) -> list[Overlap]:
    """Every (eval, train) pair at or above `threshold`, most similar first.

    An inverted index from shingle to train items keeps this linear in practice: only
    train items sharing a shingle with an eval item are compared with it.
    """
    train_sets = [shingles(ex.input, n) for ex in train]
    index: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(train_sets):
        for g in s:
            index.setdefault(g, []).append(i)
    found = []
    for ex in evaluated:
        s = shingles(ex.input, n)
        candidates = {i for g in s for i in index.get(g, ())}
        for i in sorted(candidates):
            sim = len(s & train_sets[i]) / len(s | train_sets[i])
            if sim >= threshold:
                found.append(Overlap(ex.id, train[i].id, round(sim, 3), ex.input, train[i].input))
    return sorted(found, key=lambda o: (-o.similarity, o.eval_id, o.train_id))


def check_task(task: Task, threshold: float = THRESHOLD) -> list[Overlap]:
    """Overlaps of the task's eval and eval_updated items with its train items."""
    return find_overlaps(task.train, task.eval + task.eval_updated, threshold)


EMBEDDING_THRESHOLD = 0.95  # cosine; MiniLM puts reworded questions with the same meaning above this


def find_similar(train: list[Example], evaluated: list[Example], embedder,
                 threshold: float = EMBEDDING_THRESHOLD) -> list[Overlap]:
    """Pairs whose questions mean the same in other words: cosine similarity of the task's embedder.

    Slower than the n-gram check and needs the model, so `advisor validate --embeddings` asks for it.
    Eval rows are compared in blocks, so memory stays at block x train, whatever the sizes.
    """
    import numpy as np

    train_vecs = embedder.encode([ex.input for ex in train])
    found = []
    for start in range(0, len(evaluated), 1024):
        block = evaluated[start : start + 1024]
        sims = embedder.encode([ex.input for ex in block]) @ train_vecs.T
        for i, j in zip(*np.nonzero(sims >= threshold)):
            found.append(Overlap(block[i].id, train[j].id, round(float(sims[i, j]), 3), block[i].input, train[j].input,
                                 "embedding"))
    return sorted(found, key=lambda o: (-o.similarity, o.eval_id, o.train_id))
