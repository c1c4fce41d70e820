"""Prompt engineering: the task's instructions on every request, with or without examples."""
from __future__ import annotations

import random

import numpy as np

from advisor.kinds import Family
from advisor.task import Example
from strategies.base import Strategy, fewshot_messages


class ZeroShot(Strategy):
    name = "zero-shot"
    description = "instructions only"
    complexity = 0
    family = Family.PROMPTING

    def messages(self, text, drop=0):
        return fewshot_messages(self.ctx.task.instructions, [], text)


def fixed_shots(task, seed: int) -> list[Example]:
    """k train examples drawn once with the run's seed: the classic static few-shot prompt."""
    k = min(task.spec.prompting.few_shot_k, len(task.train))
    return random.Random(seed).sample(task.train, k)


class FewShot(Strategy):
    name = "few-shot"
    description = "instructions + k fixed examples from train (seeded choice)"
    complexity = 1
    family = Family.PROMPTING
    few_shot = True

    def prepare(self):
        self.shots = fixed_shots(self.ctx.task, self.ctx.seed)

    def messages(self, text, drop=0):
        shots = self.shots[: max(0, len(self.shots) - drop)]
        return fewshot_messages(self.ctx.task.instructions, shots, text)


def nearest_examples(ctx, texts: list[str], k: int) -> list[list[Example]]:
    """The k train examples most similar to each text (cosine on normalized embeddings)."""
    train = ctx.task.train
    train_vecs = ctx.shared("train-embeddings", lambda: ctx.embedder.encode([ex.input for ex in train]))
    sims = ctx.embedder.encode(texts) @ train_vecs.T
    out = []
    for row in sims:
        best = np.argsort(-row, kind="stable")[:k]
        out.append([train[i] for i in best])
    return out


class DynamicFewShot(Strategy):
    name = "few-shot-dynamic"
    description = "instructions + the k train examples nearest to the question (embedding similarity)"
    complexity = 2
    family = Family.PROMPTING
    few_shot = True

    def prepare(self):
        self._shots: dict[str, list[Example]] = {}
        self.k = min(self.ctx.task.spec.prompting.few_shot_k, len(self.ctx.task.train))

    def _for(self, text: str) -> list[Example]:
        if text not in self._shots:
            if len(self._shots) >= 10_000:  # a server sees endless new questions: keep the memo bounded
                self._shots.clear()
            self._shots[text] = nearest_examples(self.ctx, [text], self.k)[0]
        return self._shots[text]

    def answer(self, inputs, temperature=0.0, sample_index=0, **kw):
        # Embed every question in one batch instead of one call per question.
        missing = [t for t in dict.fromkeys(inputs) if t not in self._shots]
        if missing:
            self._shots.update(zip(missing, nearest_examples(self.ctx, missing, self.k)))
        return super().answer(inputs, temperature, sample_index, **kw)

    def messages(self, text, drop=0):
        shots = self._for(text)
        # Most similar example goes last, nearest the question.
        shots = list(reversed(shots[: max(0, len(shots) - drop)]))
        return fewshot_messages(self.ctx.task.instructions, shots, text)
