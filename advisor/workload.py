"""What one row is asked: the eval items, their paraphrases, the freshness questions, the consistency probes.

Apart from the evaluation, so `advisor run --dry-run` counts a run's requests without importing the
scorers (sklearn, scipy) or the models (torch).
"""
from __future__ import annotations

from advisor.task import Task


def probe_items(n_eval: int, n_items: int) -> list[int]:
    """Items spread evenly over the eval set, so every kind of item (tag) is probed, not just the first rows."""
    n_items = min(n_items, n_eval)
    return sorted({round(k * n_eval / n_items) for k in range(n_items)}) if n_items else []


def paraphrases(task: Task) -> list[tuple[int, str]]:
    """(eval item, paraphrase) pairs, in the eval set's order."""
    return [(i, p) for i, ex in enumerate(task.eval) for p in ex.paraphrases]


def asked_again_later(task: Task) -> list[str]:
    """Inputs the run sends every row again later with the same prompt: the freshness experiment's questions
    before its update. Answered in the row's own call they fill its batches, and the experiment then reads them
    from the generation cache (6 calls of 6 prompts took ~50 s). Always, not only when that experiment runs, so
    a row's batches and hence its bf16 answers do not depend on which experiments a run has."""
    return [ex.input for ex in task.eval_updated] if task.updated_documents else []


def requests_per_row(task: Task) -> int:
    """Generation requests one row sends: eval, paraphrases, freshness questions, consistency samples, latency."""
    spec = task.spec
    items = len(probe_items(len(task.eval), spec.consistency.items)) if spec.consistency.samples >= 2 else 0
    sampled = (spec.consistency.samples - 1) * items  # the greedy eval answer is the first sample
    greedy = len(task.eval) + len(paraphrases(task)) + len(asked_again_later(task))
    return greedy + sampled + min(spec.latency.requests, len(task.eval))
